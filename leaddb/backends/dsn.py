"""Any existing PostgreSQL 15 server, by libpq connection string.

The server is not ours: ``reset`` recreates only the database the DSN names, and
only when that database carries this tool's marker comment (or does not exist),
unless ``--force``. ``down`` touches nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from leaddb import janitor
from leaddb.backends.base import Backend, BootReport, Capabilities
from leaddb.errors import BackendError
from leaddb.migrations import Migration

MARKER_COMMENT = "leaddb scratch database: safe to drop with invoke db.reset"


def mask(conninfo: str) -> str:
    """The connection string with any password replaced by ***."""
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        return "<unparsable DSN>"
    if params.get("password"):
        params["password"] = "***"
    return make_conninfo(**params)


class DsnBackend(Backend):
    name = "dsn"
    capabilities = Capabilities(owns_server=False)

    def __init__(self, project_dir: Path, dsn: str) -> None:
        super().__init__(project_dir)
        if not dsn:
            raise BackendError(
                "--backend dsn needs a connection string",
                hint="pass --dsn 'postgresql://…' or set INVOKE_DB_DSN",
            )
        try:
            self.params = conninfo_to_dict(dsn)
        except psycopg.ProgrammingError as exc:
            raise BackendError(f"invalid DSN {mask(dsn)}: {exc}") from None
        self.dsn = dsn
        self.dbname = self.params.get("dbname") or "postgres"

    def start(self) -> None:
        # fail here, with the DSN masked, rather than later in psycopg with a traceback
        self._connect(self.dbname).close()

    def conninfo(self, dbname: str | None = None) -> str:
        return make_conninfo(self.dsn, dbname=dbname or self.dbname)

    def describe(self) -> str:
        return f"existing server {mask(self.dsn)}"

    def _connect(self, dbname: str) -> psycopg.Connection:
        conninfo = make_conninfo(self.dsn, dbname=dbname)
        try:
            return psycopg.connect(conninfo, autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as exc:
            raise BackendError(
                f"cannot connect to {mask(conninfo)}: {str(exc).strip()}",
                hint="check that the server runs and the DSN is right",
            ) from None

    def reset(self, migrations: Sequence[Migration], *, force: bool = False) -> BootReport:
        report = BootReport(self.name)
        if self.dbname in ("postgres", "template0", "template1"):
            raise BackendError(
                f"refusing to recreate the {self.dbname!r} database",
                hint="name a scratch database in the DSN, e.g. dbname=leadgen_scratch",
            )
        with report.phase("recreate"), self._connect("postgres") as conn:
            row = conn.execute(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                (self.dbname,),
            ).fetchone()
            if row is not None:
                if row[0] != MARKER_COMMENT and not force:
                    raise BackendError(
                        f"database {self.dbname!r} on {mask(self.dsn)} was not created by this tool",
                        hint="pass --force to drop it anyway, or name a scratch database in the DSN",
                    )
                janitor.drop_database(conn, self.dbname)
            janitor.create_database(conn, self.dbname)
            conn.execute(
                sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                    sql.Identifier(self.dbname), sql.Literal(MARKER_COMMENT)
                )
            )
        with report.phase("apply"):
            report.apply = self.apply(migrations)
        return report

    def down(self) -> str:
        return f"dsn: {mask(self.dsn)} is not ours to stop; nothing done"
