"""``db.reset --fast``: keep the running server, recreate the database from a template.

The template database is built once per migration-set checksum (its name carries the
checksum, so any change to any migration builds a new one and drops the stale ones),
then every fast reset is ``DROP DATABASE … WITH (FORCE)`` plus
``CREATE DATABASE … TEMPLATE``: a file copy on the server, no SQL replayed.

A template is complete or it is not used: it is marked (``leaddb.janitor``'s mark, tied to its
oid, naming the whole checksum) only after every migration is in it, and the mark is checked
before every clone. A build that was killed (SIGKILL leaves no chance to clean up) leaves an
unmarked template, which the next fast reset drops and builds again.
"""

from __future__ import annotations

from collections.abc import Sequence

from psycopg.conninfo import conninfo_to_dict

from leaddb import janitor
from leaddb.backends.base import Backend, BootReport
from leaddb.console import say
from leaddb.errors import BackendError
from leaddb.migrations import Migration, checksum

TEMPLATE_PREFIX = "leaddb_tpl_"
TEMPLATE = "template"  # the mark's kind


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
    janitor.check_target(target, action="recreate", source=backend.database_setting)
    template = template_name(migrations)
    complete = f"every migration of set {checksum(list(migrations))} applied"
    with janitor.maintenance(backend.conninfo("postgres")) as conn:
        with report.phase("template"):
            existing = {
                name: (int(oid), comment)
                for name, oid, comment in conn.execute(
                    "SELECT datname, oid, shobj_description(oid, 'pg_database') FROM pg_database "
                    "WHERE datname LIKE %s",
                    (TEMPLATE_PREFIX.replace("_", "\\_") + "%",),  # "_" is LIKE's wildcard
                )
            }
            for stale in sorted(set(existing) - {template}):
                janitor.drop_database(conn, stale)
            if template in existing and not _complete(*existing[template], complete):
                say(f"fast: {template!r} is incomplete (its build was interrupted); building it again")
                janitor.drop_database(conn, template)
                del existing[template]
            if template not in existing:
                janitor.create_database(conn, template, template="template0")
                try:
                    backend.apply(migrations, dbname=template)
                    janitor.mark(conn, template, TEMPLATE, complete)  # last: complete from here on
                except BaseException:
                    janitor.drop_database(conn, template)
                    raise
        with report.phase("recreate"):
            janitor.drop_database(conn, target)
            janitor.create_database(conn, target, template=template)
    return report


def _complete(oid: int, comment: str | None, complete: str) -> bool:
    """Whether the template's mark says it was made for itself and holds the whole set."""
    mark = janitor.split_comment(comment)[1]
    return mark == (TEMPLATE, oid, complete)
