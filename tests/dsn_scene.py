"""The suite's server as a shared server, for the tests of what a task does on a server that is
not ours (tests/test_dsn.py, tests/test_hostile.py): roles, databases and sessions of a test's own,
removed afterwards; a gate that holds a migration inside the server until the test releases it."""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import printed
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from server_choice import tcp_address

from leaddb import catalog, janitor, migrations, runner
from leaddb.backends.base import Backend, Capabilities
from leaddb.backends.dsn import MARK, MARK_NOTE, lock_key

MIGRATIONS = Path("api/db/migrations")
WAIT = 60  # seconds: the bound of every polling loop


def ident(name: str) -> sql.Identifier:
    return sql.Identifier(name)


class Scene:
    """The suite's server as a shared server: its superuser sets up roles and databases for a
    test and removes them afterwards; ``dsn`` builds the connection strings users would pass,
    by default as ``admin``, a superuser of the scene's own with a password."""

    def __init__(self, server) -> None:
        self.server = server
        self.host, self.port = tcp_address(server.conninfo("postgres"))
        self.tag = secrets.token_hex(4)
        self.dbname = f"dsn_{self.tag}"
        self.roles: list[str] = []
        self.gates: list[Gate] = []
        self.kept: list[psycopg.Connection] = []
        self.subscriptions: list[str] = []
        self.admin, self.password = self.role("admin", "SUPERUSER")

    def connect(self) -> psycopg.Connection:
        """The suite's own connection to the server's 'postgres' database."""
        return psycopg.connect(self.server.conninfo("postgres"), autocommit=True)

    def role(self, name: str, *attributes: str) -> tuple[str, str]:
        role, password = f"dsn_{self.tag}_{name}", secrets.token_urlsafe(12)
        with self.connect() as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} " + " ".join(attributes)).format(
                    ident(role), sql.Literal(password)
                )
            )
        self.roles.append(role)
        return role, password

    def dsn(self, role: str | None = None, password: str | None = None, *, dbname: str | None = None) -> str:
        role, password = role or self.admin, self.password if password is None else password
        return f"postgresql://{role}:{password}@{self.host}:{self.port}/{dbname or self.dbname}"

    def create(self, dbname: str | None = None, *, owner: str | None = None, marked: bool = True) -> None:
        """A database with one table holding one row, to tell it from a rebuilt one."""
        dbname, owner = dbname or self.dbname, owner or self.admin
        with self.connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(ident(dbname), ident(owner)))
            if marked:
                janitor.mark(conn, dbname, MARK, MARK_NOTE)
        with psycopg.connect(self.server.conninfo(dbname), autocommit=True) as conn:
            conn.execute("CREATE TABLE precious (note text); INSERT INTO precious VALUES ('still here')")

    def databases(self, *, reference: bool = False) -> set[str]:
        """The databases of this scene (and the reference database, if asked)."""
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s OR (%s AND datname = %s)",
                (f"dsn\\_{self.tag}%", reference, f"dsnref_{self.tag}"),
            )
            return {r[0] for r in rows}

    def precious(self, dbname: str | None = None) -> list[str]:
        with psycopg.connect(self.server.conninfo(dbname or self.dbname)) as conn:
            return [r[0] for r in conn.execute("SELECT note FROM precious")]

    def comment(self, dbname: str | None = None) -> str | None:
        with self.connect() as conn:
            row = conn.execute(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                (dbname or self.dbname,),
            ).fetchone()
            return row[0] if row else None

    def databases_like(self, pattern: str) -> set[str]:
        """Every database on the server whose name is LIKE ``pattern`` (not only the scene's)."""
        with self.connect() as conn:
            return {
                r[0]
                for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (pattern,))
            }

    def marked(self, dbname: str | None = None, kind: str = MARK) -> bool:
        """Whether the database carries the mark of ``kind`` (the reset's, by default), made for
        it (its own oid)."""
        with self.connect() as conn:
            row = conn.execute(
                "SELECT oid, shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                (dbname or self.dbname,),
            ).fetchone()
        return row is not None and janitor.is_marked(row[1], int(row[0]), kind)

    def snapshot(self, dbname: str | None = None) -> catalog.Snapshot:
        return catalog.snapshot_of(self.server.conninfo(dbname or self.dbname))

    def clean_apply(self, files: list[migrations.Migration]) -> catalog.Snapshot:
        """The catalog of ``files`` applied once to a new database, as the reference."""
        name = f"dsnref_{self.tag}"
        with self.connect() as conn:
            janitor.create_database(conn, name)
        runner.apply(self.server.conninfo(name), files)
        return self.snapshot(name)

    def lock_holders(self, dbname: str | None = None) -> list[int]:
        key = lock_key(dbname or self.dbname)
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND classid = %s::bigint::oid AND objid = %s::bigint::oid AND objsubid = 1",
                ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF),
            )
            return [r[0] for r in rows]

    def keep(self, conn: psycopg.Connection) -> None:
        """A session of the test's, closed by ``release``."""
        self.kept.append(conn)

    def subscribe(self) -> None:
        """A logical replication subscription in the scene's database (not connected anywhere)."""
        with psycopg.connect(self.server.conninfo(self.dbname), autocommit=True) as conn:
            conn.execute(
                sql.SQL(
                    "CREATE SUBSCRIPTION {} CONNECTION 'dbname=nowhere' PUBLICATION p WITH (connect = false)"
                ).format(ident(f"dsn_{self.tag}_sub"))
            )
        self.subscriptions.append(self.dbname)

    def alter(self, template: str) -> None:
        """A statement of the suite's superuser, {admin} and {db} filled in as identifiers."""
        with self.connect() as conn:
            conn.execute(sql.SQL(template).format(admin=ident(self.admin), db=ident(self.dbname)))

    def release(self) -> None:
        for conn in self.kept:
            conn.close()
        self.kept.clear()
        for dbname in self.subscriptions:
            with psycopg.connect(self.server.conninfo(dbname), autocommit=True) as conn:
                name = ident(f"dsn_{self.tag}_sub")
                conn.execute(sql.SQL("ALTER SUBSCRIPTION {} SET (slot_name = NONE)").format(name))
                conn.execute(sql.SQL("DROP SUBSCRIPTION {}").format(name))
        self.subscriptions.clear()

    def gate(self) -> Gate:
        """A gate of its own for a gated migration; opened (at the latest) by ``remove``."""
        gate = Gate(self, f"dsn_{self.tag}_gate_{len(self.gates)}")
        self.gates.append(gate)
        return gate

    def remove(self) -> None:
        self.release()
        for gate in self.gates:
            gate.release()  # a gated migration still waiting ends
        with self.connect() as conn:
            for name in self.databases(reference=True):
                conn.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE false").format(ident(name)))
                janitor.drop_database(conn, name)
            for role in self.roles:
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(ident(role)))


class Gate(printed.Gate):
    """Holds a gated migration inside the server until the test releases it (tests/printed.py)."""

    def __init__(self, scene: Scene, name: str) -> None:
        super().__init__(name)
        self.scene = scene

    def migration(self, table: str, file: str = "0008_gate.sql") -> str:
        """Creates ``table``, then holds its transaction open until the gate is released;
        ``file``: its name, which the header names (the spec's file rules)."""
        header = f"-- migration: {MIGRATIONS.as_posix()}/{file}"
        return f"{header}\nBEGIN;\nCREATE TABLE {table} (id int);\n{self.sql()}COMMIT;\n"

    def entered(self, conninfo: str | None = None) -> bool:
        return super().entered(conninfo or self.scene.server.conninfo("postgres"))

    def wait_entered(self, process: subprocess.Popen) -> None:  # type: ignore[override]
        super().wait_entered(lambda: self.scene.server.conninfo("postgres"), process)

    def release(self) -> None:  # type: ignore[override]
        super().release(self.scene.server.conninfo("postgres"))
        if self.name not in self.scene.roles:  # the gate's role goes with the scene's
            self.scene.roles.append(self.name)


class Owned(Backend):
    """A backend whose server counts as the workspace's own (``db.reset --fast`` works on it),
    over any server: the project's database is ``target`` on the server ``base`` reaches."""

    name = "owned"
    capabilities = Capabilities(owns_server=True)

    def __init__(self, project_dir: Path, base: str, target: str) -> None:
        super().__init__(project_dir)
        self.base, self.target = base, target

    def conninfo(self, dbname: str | None = None) -> str:
        return make_conninfo(self.base, dbname=dbname or self.target)

    def reset(self, migrations, *, force=False, end_sessions=False):
        raise NotImplementedError("the tests reset with fast.reset")

    def start(self) -> None:
        pass

    def down(self) -> str:
        return "nothing"

    def describe(self) -> str:
        return f"database {self.target} (a test's)"
