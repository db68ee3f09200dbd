"""Any existing PostgreSQL 15 server, by libpq connection string.

The server is not ours: ``reset`` recreates only the database the DSN names, and only when
that database carries this tool's marker comment (or does not exist), unless ``--force``.
``down`` touches nothing.

A reset never loses what it cannot rebuild. It checks first that the DSN's role may create
databases (``CREATEDB``) and may drop and rename the target (it owns it, or is a superuser);
then it builds the new database beside the old one, under a temporary name, with every
migration applied; only then does it swap the two in one transaction (old → tombstone, new →
target) and drop the tombstone. Any failure before the swap leaves the old database as it was
and drops the half-built one. A crash leaves at most a marked ``<db>__leaddb_new`` or
``<db>__leaddb_old``, which the next reset drops.

Every task that changes the database holds a server-side advisory lock keyed on the target
database (:func:`lock_key`), taken in the maintenance database ``postgres`` on a session of its
own for the whole task: exclusive for reset and bench, shared for apply and reapply. The server
drops it when that session ends, so a crashed task leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from leaddb import janitor, masking, runner
from leaddb.backends.base import Backend, BootReport, Capabilities
from leaddb.console import say
from leaddb.errors import BackendError, LeadDbError
from leaddb.migrations import Migration

MARKER_COMMENT = "leaddb scratch database: safe to drop with invoke db.reset"
RESERVED = ("postgres", "template0", "template1")

# Where the task lock lives and the databases are created, renamed and dropped from. Advisory
# locks are scoped to the database of the session that takes them, so every task must take the
# lock in the same one: not the target (a reset renames and drops it, which needs no session on
# it), not template1 (CREATE DATABASE copies it and refuses while a session is on it). A reset
# needs a session outside the target anyway; ``postgres`` is the one every server has.
MAINTENANCE_DB = "postgres"

# The database a reset builds, and the old one between the swap and its drop. Both carry the
# marker comment, so the next reset drops them when a crash left them behind.
NEW_SUFFIX = "__leaddb_new"
OLD_SUFFIX = "__leaddb_old"
MAX_IDENTIFIER_BYTES = 63  # NAMEDATALEN - 1: longer names are silently truncated by the server

# Ending a session takes a moment; a new one may connect between the end and the rename.
SWAP_ATTEMPTS = 3
TERMINATE_WAIT_MS = 5000

# application_name of the lock's session: how a refused task learns which task holds the lock
LOCK_APPLICATION = "leaddb "

# Tasks that touch nothing on a server that is not ours (``down`` says so): they take no lock,
# so that they answer even when the server does not.
CHANGES_NOTHING = frozenset({"db.down"})


def mask(conninfo: str) -> str:
    """The connection string with every secret replaced by *** (``leaddb.masking``)."""
    return masking.masked(conninfo)


def lock_key(dbname: str) -> int:
    """The task lock's ``pg_advisory_lock`` key for ``dbname``: the first 8 bytes of
    SHA-256("leaddb:" + dbname) as a signed bigint. Taken in the ``postgres`` database, it is
    one lock per target database on the server (the runner's apply lock is another key, taken
    in the target database itself)."""
    digest = hashlib.sha256(f"leaddb:{dbname}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def side_name(dbname: str, suffix: str) -> str:
    """``<dbname><suffix>``, or, where that would pass the server's 63-byte limit (and be
    truncated, possibly into ``dbname`` itself), a cut of ``dbname`` plus a hash of all of it."""
    name = dbname + suffix
    if len(name.encode()) <= MAX_IDENTIFIER_BYTES:
        return name
    digest = hashlib.sha256(dbname.encode()).hexdigest()[:8]
    room = MAX_IDENTIFIER_BYTES - len(suffix) - len(digest) - 1
    head = dbname.encode()[:room].decode("utf-8", errors="ignore")
    return f"{head}_{digest}{suffix}"


def _reason(exc: psycopg.Error) -> str:
    """psycopg's message on one line (it names host, port and database, never the password)."""
    return " ".join(str(exc).split())


def connection_hint(reason: str, dbname: str) -> str:
    """The next step for a failed connection, from libpq's (English) message."""
    if "password authentication failed" in reason or "no password supplied" in reason:
        return "check the user and password in the DSN (or PGPASSWORD / ~/.pgpass)"
    if "does not exist" in reason and "database" in reason:
        return f"`invoke db.reset --backend dsn` creates database {dbname!r} (the role needs CREATEDB)"
    if "permission denied" in reason:
        return f"the role may not connect to {dbname!r}: GRANT CONNECT, or connect as another role"
    if "resolve host" in reason or "could not translate host name" in reason:
        return "check the host name in the DSN"
    if "Connection refused" in reason or "timeout expired" in reason or "No such file" in reason:
        return "check that the server runs and listens on that host and port"
    return "check that the server runs and the DSN is right"


# (server, lock key) -> [session, depth]: the lock is per process, re-entrant
_held: dict[tuple, list] = {}
_guard = threading.Lock()


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
        except (psycopg.ProgrammingError, ValueError) as exc:  # ValueError: a %-escape not UTF-8
            raise BackendError(f"invalid DSN {mask(dsn)}: {masking.scrub(str(exc).strip(), dsn)}") from None
        self.dsn = dsn
        self.dbname = self.params.get("dbname") or "postgres"
        self.masked = mask(dsn)

    def start(self) -> None:
        # fail here, with the DSN masked, rather than later in psycopg with a traceback
        self._connect(self.dbname).close()

    def conninfo(self, dbname: str | None = None) -> str:
        return make_conninfo(self.dsn, dbname=dbname or self.dbname)

    def describe(self) -> str:
        return f"existing server {self.masked}"

    def apply(
        self,
        migrations: Sequence[Migration],
        *,
        dbname: str | None = None,
        reapply: bool = False,
        on_file=None,
    ) -> runner.ApplyResult:
        """As every backend's, but never into the maintenance or template databases: a DSN
        without ``dbname`` (this backend then connects to ``postgres``) must not get the
        schema in a database that is not the project's."""
        if dbname is None and self.dbname in RESERVED:
            named = "names no database" if not self.params.get("dbname") else f"names {self.dbname!r}"
            raise BackendError(
                f"refusing to apply the migrations to the {self.dbname!r} database: the DSN {named}",
                hint="name the project's database in the DSN, e.g. dbname=leadgen "
                "(`invoke db.reset --backend dsn` builds it)",
            )
        return super().apply(migrations, dbname=dbname, reapply=reapply, on_file=on_file)

    def down(self) -> str:
        return f"dsn: {self.masked} is not ours to stop; nothing done"

    # -- connections -----------------------------------------------------------------

    def _timeout(self) -> dict:
        """The DSN's own connect_timeout when it has one, so that a bad one fails in the first
        connection, here, and not as a traceback in a later one that does not override it."""
        return {} if "connect_timeout" in self.params else {"connect_timeout": 10}

    def _connect(self, dbname: str, **kwargs) -> psycopg.Connection:
        conninfo = self.conninfo(dbname)
        try:
            return psycopg.connect(conninfo, autocommit=True, **self._timeout(), **kwargs)
        except psycopg.Error as exc:  # also a parameter psycopg itself rejects (ProgrammingError)
            reason = masking.scrub(_reason(exc), conninfo)
            raise BackendError(
                f"cannot connect to {mask(conninfo)}: {reason}", hint=connection_hint(reason, dbname)
            ) from None

    def _maintenance(self, **kwargs) -> psycopg.Connection:
        """A session on ``postgres`` that no idle timeout of the server ends mid-task."""
        conninfo = self.conninfo(MAINTENANCE_DB)
        try:
            conn = psycopg.connect(conninfo, autocommit=True, **self._timeout(), **kwargs)
        except psycopg.Error as exc:
            raise BackendError(
                f"cannot connect to {mask(conninfo)}: {masking.scrub(_reason(exc), conninfo)}",
                hint="check that the server runs and the DSN is right; tasks that change the database "
                f"also connect to {MAINTENANCE_DB!r} on the same server (the task lock lives there, and a "
                "reset creates, renames and drops databases from it), so the role needs CONNECT on it and "
                "pg_hba.conf must let it in; nothing was changed",
            ) from None
        try:
            conn.execute("SET idle_session_timeout = 0")
        except psycopg.Error:
            pass  # a server without the setting has no such timeout either
        return conn

    @contextmanager
    def _server_errors(self, what: str) -> Iterator[None]:
        """A refusal of the server (privileges, a name taken meanwhile) as one message."""
        try:
            yield
        except psycopg.Error as exc:
            raise BackendError(
                f"{what} on {self.masked} failed: {_reason(exc)}",
                hint="see the server's message above; `invoke db.reset` cleans up what this run left",
            ) from None

    # -- the task lock ---------------------------------------------------------------

    @contextmanager
    def lock(self, task: str, *, shared: bool = False) -> Iterator[None]:
        if task in CHANGES_NOTHING:
            yield
            return
        key = lock_key(self.dbname)
        server = tuple(sorted((k, v) for k, v in self.params.items() if k not in ("password", "dbname")))
        ident = (server, key)
        with _guard:
            entry = _held.get(ident)
            if entry is not None:
                entry[1] += 1
        if entry is not None:
            try:
                yield
            finally:
                with _guard:
                    entry[1] -= 1
            return
        session = self._take_lock(task, key, shared)
        if session is None:
            yield
            return
        try:
            with _guard:
                _held[ident] = [session, 1]
            try:
                yield
            finally:
                with _guard:
                    del _held[ident]
        finally:
            session.close()  # ends the session: the server releases the lock with it

    def _take_lock(self, task: str, key: int, shared: bool) -> psycopg.Connection | None:
        application = f"{LOCK_APPLICATION}{task} (client pid {os.getpid()})"
        try:
            session = self._maintenance(application_name=application[:MAX_IDENTIFIER_BYTES])
        except BackendError:
            if not shared:
                raise
            # An apply needs only the target database; where the role cannot reach `postgres`
            # it goes ahead without the task lock (the runner's lock still serialises applies,
            # and a reset cannot run from such a role). A server that does not answer at all
            # is reported as such by this connection.
            self._connect(self.dbname).close()
            say(
                f"note: {task} runs without the task lock: the DSN's role cannot connect to the "
                f"{MAINTENANCE_DB!r} database on this server (applies stay serialised by the runner's lock)"
            )
            return None
        function = "pg_try_advisory_lock_shared" if shared else "pg_try_advisory_lock"
        try:
            for _ in range(2):  # the holder may finish between our try and our look
                if session.execute(f"SELECT {function}(%s)", (key,)).fetchone()[0]:
                    return session
                holder = self._lock_holder(session, key)
                if holder is not None:
                    break
        except psycopg.Error as exc:
            session.close()
            raise BackendError(
                f"cannot take the task lock for {task} of database {self.dbname!r} on {self.masked}: "
                f"{_reason(exc)}",
                hint="check that the server runs; nothing was changed",
            ) from None
        session.close()
        pid, running, client = holder or ("?", "task", "")
        raise BackendError(
            f"another {running} of database {self.dbname!r} on {self.masked} is running "
            f"(pid {pid}, its session on the server{client})",
            hint="wait for it to finish; nothing was changed by this one",
        )

    @staticmethod
    def _lock_holder(session: psycopg.Connection, key: int) -> tuple[int, str, str] | None:
        """The server pid of a session holding ``key`` (an exclusive holder first), with the task
        and client pid its application_name names."""
        row = session.execute(
            """
            SELECT l.pid, a.application_name
            FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE l.locktype = 'advisory' AND l.granted AND l.pid <> pg_backend_pid()
              AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND l.classid = %s::bigint::oid AND l.objid = %s::bigint::oid AND l.objsubid = 1
            ORDER BY l.mode = 'ExclusiveLock' DESC, l.pid
            LIMIT 1
            """,
            ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF),
        ).fetchone()
        if row is None:
            return None
        pid, application = row
        if application and application.startswith(LOCK_APPLICATION):
            running, _, client = application.removeprefix(LOCK_APPLICATION).partition(" ")
            return pid, running, f"; {client.strip('()')}" if client else ""
        return pid, "task", ""

    # -- reset -------------------------------------------------------------------------

    def reset(self, migrations: Sequence[Migration], *, force: bool = False) -> BootReport:
        """Build the new database beside the old one, then swap (see the module's docstring).
        The caller holds ``lock``."""
        report = BootReport(self.name)
        target = self.dbname
        if target in RESERVED:
            raise BackendError(
                f"refusing to recreate the {target!r} database",
                hint="name a scratch database in the DSN, e.g. dbname=leadgen_scratch",
            )
        if target.endswith((NEW_SUFFIX, OLD_SUFFIX)):
            raise BackendError(
                f"refusing to reset {target!r}: a reset uses names ending in {NEW_SUFFIX} and "
                f"{OLD_SUFFIX} for its own work",
                hint="name the database itself in the DSN",
            )
        new, old = side_name(target, NEW_SUFFIX), side_name(target, OLD_SUFFIX)
        with self._maintenance() as conn:
            with report.phase("check"):
                exists = self._check(conn, target, new, old, force)
            with report.phase("create"), self._server_errors(f"creating database {new!r}"):
                janitor.create_database(conn, new)
                try:
                    conn.execute(self._comment(new))
                except BaseException:
                    self._drop_quietly(conn, new)
                    raise
            with report.phase("apply"):
                report.apply = self._apply_to_new(conn, migrations, new)
            with report.phase("swap"):
                self._swap(conn, target, new, old, exists)
        return report

    def _check(self, conn: psycopg.Connection, target: str, new: str, old: str, force: bool) -> bool:
        """Everything the reset will need, proved before anything is created or dropped; drops
        what an earlier, interrupted reset left. Whether the target exists."""
        with self._server_errors("reading the role and the databases"):
            role, superuser, createdb = conn.execute(
                "SELECT rolname, rolsuper, rolcreatedb FROM pg_roles WHERE rolname = current_user"
            ).fetchone()
            databases = {
                name: (owner, comment, may_drop, template)
                for name, owner, comment, may_drop, template in conn.execute(
                    "SELECT datname, pg_get_userbyid(datdba), shobj_description(oid, 'pg_database'), "
                    "pg_has_role(datdba, 'USAGE'), datistemplate FROM pg_database WHERE datname = ANY(%s)",
                    ([target, new, old],),
                )
            }
        if not (superuser or createdb):
            raise BackendError(
                f"role {role!r} on {self.masked} may not create databases (it has no CREATEDB), so a "
                f"reset could not rebuild {target!r}; nothing was changed",
                hint=f"as a superuser: ALTER ROLE {sql.Identifier(role).as_string(conn)} CREATEDB; "
                "or use a DSN whose role has it",
            )
        for name in (target, new, old):
            if name not in databases:
                continue
            owner, comment, may_drop, template = databases[name]
            if template:
                raise BackendError(
                    f"database {name!r} on {self.masked} is a template database; refusing to drop it",
                    hint="name a scratch database in the DSN",
                )
            if comment != MARKER_COMMENT and not force:
                if name == target:
                    raise BackendError(
                        f"database {name!r} on {self.masked} was not created by this tool",
                        hint="pass --force to drop it anyway, or name a scratch database in the DSN",
                    )
                raise BackendError(
                    f"database {name!r} on {self.masked} is in the way: a reset of {target!r} builds "
                    "under that name, and it was not created by this tool",
                    hint="drop or rename it yourself, or pass --force to let the reset drop it",
                )
            if not may_drop:
                raise BackendError(
                    f"database {name!r} on {self.masked} belongs to role {owner!r}; role {role!r} may not "
                    f"drop or rename it, so a reset could not replace it; nothing was changed",
                    hint=f"connect as {owner!r} (or a superuser), or name a database of your own in the DSN",
                )
        for leftover in (new, old):
            if leftover in databases:
                say(f"dsn: dropping {leftover!r}, left behind by an interrupted reset")
                with self._server_errors(f"dropping the leftover database {leftover!r}"):
                    janitor.drop_database(conn, leftover)
        return target in databases

    def _comment(self, dbname: str) -> sql.Composed:
        return sql.SQL("COMMENT ON DATABASE {} IS {}").format(
            sql.Identifier(dbname), sql.Literal(MARKER_COMMENT)
        )

    def _drop_quietly(self, conn: psycopg.Connection, dbname: str) -> bool:
        """Drop ``dbname`` after another failure, which stays the one reported."""
        try:
            janitor.drop_database(conn, dbname)
            return True
        except psycopg.Error:
            return False

    def _apply_to_new(self, conn: psycopg.Connection, migrations: Sequence[Migration], new: str):
        try:
            return self.apply(migrations, dbname=new)
        except LeadDbError as exc:
            dropped = self._drop_quietly(conn, new)
            # the runner's hint says what stayed applied: in the database being built, now gone
            action = (exc.hint or "").partition(";")[0] or "fix the cause above"
            state = (
                f"{new!r} (the database being built) was dropped"
                if dropped
                else f"{new!r} (the database being built) is left; the next reset drops it"
            )
            raise type(exc)(
                exc.detail, hint=f"{action}; {state}; {self.dbname!r} on {self.masked} is unchanged"
            ) from None
        except BaseException:
            self._drop_quietly(conn, new)
            raise

    def _swap(self, conn: psycopg.Connection, target: str, new: str, old: str, exists: bool) -> None:
        """``new`` becomes ``target`` in one transaction; the old one, renamed ``old``, is dropped."""
        rename = sql.SQL("ALTER DATABASE {} RENAME TO {}")
        try:
            if not exists:
                with self._server_errors(f"renaming {new!r} to {target!r}"):
                    conn.execute(rename.format(sql.Identifier(new), sql.Identifier(target)))
                return
            for attempt in range(1, SWAP_ATTEMPTS + 1):
                # we may drop it (marked, or --force): its sessions would end with it anyway
                with self._server_errors(f"ending the sessions on {target!r}"):
                    self._end_sessions(conn, target)
                try:
                    with conn.transaction():
                        conn.execute(self._comment(target))  # the tombstone is ours to drop
                        conn.execute(rename.format(sql.Identifier(target), sql.Identifier(old)))
                        conn.execute(rename.format(sql.Identifier(new), sql.Identifier(target)))
                    break
                except psycopg.errors.ObjectInUse as exc:
                    if attempt == SWAP_ATTEMPTS:
                        raise BackendError(
                            f"cannot replace database {target!r} on {self.masked}: sessions keep "
                            f"connecting to it ({_reason(exc)}); nothing was changed",
                            hint=f"stop what connects to {target!r} and run db.reset again",
                        ) from None
                except psycopg.Error as exc:
                    if conn.broken:  # the commit may or may not have reached the server
                        raise BackendError(
                            f"the connection to {self.masked} was lost while swapping {new!r} in for "
                            f"{target!r} ({_reason(exc)}): the swap is one transaction, so either "
                            f"{target!r} is the old database and {new!r} the new one, or the swap is done",
                            hint="run db.reset again: it drops whichever of the two is left over",
                        ) from None
                    raise BackendError(
                        f"swapping {new!r} in for {target!r} on {self.masked} failed: {_reason(exc)}; "
                        "nothing was changed",
                        hint="see the server's message above",
                    ) from None
        except BaseException:
            self._drop_quietly(conn, new)
            raise
        if not self._drop_quietly(conn, old):
            say(f"dsn: could not drop the old database, now {old!r}; the next db.reset drops it")

    def _end_sessions(self, conn: psycopg.Connection, dbname: str) -> None:
        """End every session on ``dbname``, or refuse naming those this role may not end."""
        kept = []
        for pid, user in conn.execute(
            # sessions of a role (backend_type is hidden from other roles); autovacuum workers,
            # which have none, the rename ends itself
            "SELECT pid, usename FROM pg_stat_activity "
            "WHERE datname = %s AND usesysid IS NOT NULL AND pid <> pg_backend_pid()",
            (dbname,),
        ).fetchall():
            try:
                conn.execute("SELECT pg_terminate_backend(%s, %s)", (pid, TERMINATE_WAIT_MS))
            except psycopg.errors.InsufficientPrivilege:
                kept.append(f"pid {pid} of role {user!r}")
        if kept:
            raise BackendError(
                f"database {dbname!r} on {self.masked} has sessions this role may not end "
                f"({', '.join(kept)}); nothing was changed",
                hint="close them (or have a superuser run SELECT pg_terminate_backend(pid)) and run "
                "db.reset again",
            )
