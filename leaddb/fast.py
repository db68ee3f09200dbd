"""``db.reset --fast``: keep the running server, recreate the database from a template.

The template database is built once per migration-set checksum (its name carries the
checksum, so any change to any migration builds a new one and drops the stale ones),
then every fast reset is ``DROP DATABASE … WITH (FORCE)`` plus
``CREATE DATABASE … TEMPLATE``: a file copy on the server, no SQL replayed.
"""

from __future__ import annotations

from collections.abc import Sequence

from psycopg.conninfo import conninfo_to_dict

from leaddb import janitor
from leaddb.backends.base import Backend, BootReport
from leaddb.errors import BackendError
from leaddb.migrations import Migration, checksum

TEMPLATE_PREFIX = "leaddb_tpl_"


def template_name(migrations: Sequence[Migration]) -> str:
    return TEMPLATE_PREFIX + checksum(list(migrations))[:16]


def reset(backend: Backend, migrations: Sequence[Migration]) -> BootReport:
    """The caller holds ``backend.lock``: a second reset would clone a template still being built."""
    if not backend.capabilities.owns_server:
        raise BackendError(
            "--fast is for servers this workspace runs (local, docker)",
            hint="drop --fast; on a shared server db.reset recreates only its own scratch database",
        )
    report = BootReport(f"{backend.name} --fast")
    target = conninfo_to_dict(backend.conninfo())["dbname"]
    template = template_name(migrations)
    with janitor.maintenance(backend.conninfo("postgres")) as conn:
        with report.phase("template"):
            existing = {
                row[0]
                for row in conn.execute(
                    "SELECT datname FROM pg_database WHERE datname LIKE %s",
                    (TEMPLATE_PREFIX.replace("_", "\\_") + "%",),  # "_" is LIKE's wildcard
                )
            }
            for stale in sorted(existing - {template}):
                janitor.drop_database(conn, stale)
            if template not in existing:
                janitor.create_database(conn, template, template="template0")
                try:
                    backend.apply(migrations, dbname=template)
                except BaseException:
                    janitor.drop_database(conn, template)
                    raise
        with report.phase("recreate"):
            janitor.drop_database(conn, target)
            janitor.create_database(conn, target, template=template)
    return report
