"""Any existing PostgreSQL 15 server, by libpq connection string.

The server is not ours: ``reset`` recreates only the database the DSN names, and only when
that database carries this tool's mark (``leaddb.janitor``: the last line of its comment,
tied to its oid) or does not exist, unless ``--force``. ``down`` touches nothing.

A reset decides first, then acts, and never loses what it cannot rebuild. Before anything is
created, dropped or ended it proves, and names in one refusal whatever fails: that the role
may create databases (``CREATEDB``) and drop and rename the target (owns it, or is a
superuser); that the target is this tool's (or ``--force``); that ``<db>__leaddb_new`` and
``<db>__leaddb_old``, if they exist, are this tool's (``--force`` never covers them: a
database of that name without the mark is someone else's); that no other client has a
session on any of them (unless ``--end-sessions``: then that this role may end each one); that
no prepared transaction, replication slot or subscription holds them; and that everything
that belongs to the database rather than to its schema can be carried over
(``leaddb.backends.database``: owner, encoding and locale, tablespace, connection limit, ACL,
settings, comment). Then it names every database it will drop, builds the new database
beside the old one under a temporary name with those properties and every migration applied,
compares the two, and only then swaps them in one transaction (old → tombstone, new → target)
and drops the tombstone. Any failure before the swap leaves the old database as it was and
drops the half-built one. A crash leaves at most a marked ``<db>__leaddb_new`` or
``<db>__leaddb_old``, which the next reset drops.

Every task that changes the database holds a server-side advisory lock keyed on the target
database (:func:`lock_key`), taken in the maintenance database ``postgres`` on a session of its
own for the whole task: exclusive for reset and bench, shared for apply and reapply. The server
drops it when that session ends, so a crashed task leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from leaddb import janitor, masking, runner
from leaddb.backends import database
from leaddb.backends.base import Backend, BootReport, Capabilities
from leaddb.console import say
from leaddb.errors import BackendError, LeadDbError
from leaddb.migrations import Migration

# The mark of the databases a reset makes (``leaddb.janitor.mark``): its kind, and what it says.
MARK = "database"
MARK_NOTE = "built by invoke db.reset, which replaces it"
TOMBSTONE_NOTE = "replaced by invoke db.reset; dropped by it, or by the next reset"
RESERVED = janitor.RESERVED

# Where the task lock lives and the databases are created, renamed and dropped from. Advisory
# locks are scoped to the database of the session that takes them, so every task must take the
# lock in the same one: not the target (a reset renames and drops it, which needs no session on
# it), not template1 (CREATE DATABASE copies it and refuses while a session is on it). A reset
# needs a session outside the target anyway; ``postgres`` is the one every server has.
MAINTENANCE_DB = "postgres"

# The database a reset builds, and the old one between the swap and its drop. Both carry the
# mark (``MARK``, made for their own oid), so the next reset drops them when a crash left them
# behind; a database of either name without it is someone else's, and never dropped.
NEW_SUFFIX = "__leaddb_new"
OLD_SUFFIX = "__leaddb_old"
MAX_IDENTIFIER_BYTES = janitor.MAX_NAME_BYTES  # longer names are cut by the server

# Ending a session takes a moment; a new one may connect between the end and the rename
# (with --end-sessions; without it a session that connects meanwhile refuses the swap).
SWAP_ATTEMPTS = 3
TERMINATE_WAIT_MS = 5000
# A client that has just closed its connection may be listed among the sessions for a moment.
SESSION_GRACE = 1.0

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


class DsnBackend(Backend):
    name = "dsn"
    capabilities = Capabilities(owns_server=False)  # a shared server's boot is not ours to time
    built = "the new database built beside the old one (the old one is unchanged)"

    @classmethod
    def create(cls, project_dir: Path, *, dsn: str = "") -> DsnBackend:
        return cls(project_dir, dsn)

    database_setting = "the DSN's dbname"

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
        self._lock_session: psycopg.Connection | None = None  # while the task lock is held
        too_long = janitor.length_problem(self.dbname)
        if too_long:  # the server would connect every task to the cut name: another database
            raise BackendError(
                f"the DSN names database {self.dbname!r}: {too_long}",
                hint=f"name a database of at most {MAX_IDENTIFIER_BYTES} bytes in the DSN; nothing was done",
            )

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
        problem = janitor.name_problem(self.dbname) if dbname is None else None
        if problem:
            named = "names no database" if not self.params.get("dbname") else f"names {self.dbname!r}"
            raise BackendError(
                f"refusing to apply the migrations to the {self.dbname!r} database: the DSN {named} "
                f"({problem})",
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
            return runner.connect(conninfo, **self._timeout(), **kwargs)
        except psycopg.Error as exc:  # also a parameter psycopg itself rejects (ProgrammingError)
            reason = masking.scrub(_reason(exc), conninfo)
            raise BackendError(
                f"cannot connect to {mask(conninfo)}: {reason}", hint=connection_hint(reason, dbname)
            ) from None

    def _maintenance(self, **kwargs) -> psycopg.Connection:
        """A session on ``postgres`` that no idle timeout of the server ends mid-task."""
        conninfo = self.conninfo(MAINTENANCE_DB)
        try:
            conn = runner.connect(conninfo, **self._timeout(), **kwargs)
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
        session = self._take_lock(task, lock_key(self.dbname), shared)
        if session is None:
            yield
            return
        self._lock_session = session
        try:
            yield
        finally:
            self._lock_session = None
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

    def reset(
        self, migrations: Sequence[Migration], *, force: bool = False, end_sessions: bool = False
    ) -> BootReport:
        """Decide, then build the new database beside the old one, then swap (the module's
        docstring). The caller holds ``lock``."""
        report = BootReport(self.name)
        target = self.dbname
        problem = janitor.name_problem(target)
        if problem:
            raise BackendError(
                f"refusing to recreate the {target!r} database: {problem}",
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
                existing, leftovers = self._decide(conn, target, new, old, force, end_sessions)
                self._drop_leftovers(conn, leftovers)
            with report.phase("create"), self._server_errors(f"creating database {new!r}"):
                database.create_like(conn, new, existing)
                try:
                    keep = database.user_comment(existing.comment) if existing else ""
                    janitor.mark(conn, new, MARK, MARK_NOTE, keep=keep)
                except BaseException:
                    self._drop_quietly(conn, new)
                    raise
            with report.phase("apply"):
                report.apply = self._apply_to_new(conn, migrations, new)
            with report.phase("carry"):
                if existing is not None:
                    self._carry(conn, new, existing)
            with report.phase("swap"):
                self._swap(conn, target, new, old, existing is not None, end_sessions)
        return report

    def _decide(
        self, conn: psycopg.Connection, target: str, new: str, old: str, force: bool, end_sessions: bool
    ) -> tuple[database.Facts | None, list[str]]:
        """Everything the reset will need, proved before anything is created, dropped or ended;
        every reason to refuse named in one message. The target's properties (None: it does not
        exist) and the leftovers of an interrupted reset, to drop."""
        with self._server_errors("reading the role and the databases"):
            role, superuser, createdb = conn.execute(
                "SELECT rolname, rolsuper, rolcreatedb FROM pg_roles WHERE rolname = current_user"
            ).fetchone()
            facts = database.read(conn, [target, new, old])
            present = [name for name in (target, new, old) if name in facts]
            # on the reset's own leftovers, a session of ours is a killed run's: the drop ends it
            busy = [s for s in self._sessions_that_stay(conn, present) if s.database == target or not s.ours]
            blockers = database.blockers(conn, present) if present else []
            uncarriable = database.uncarriable(conn, facts[target]) if target in facts else []
        if not (superuser or createdb):
            raise BackendError(
                f"role {role!r} on {self.masked} may not create databases (it has no CREATEDB), so a "
                f"reset could not rebuild {target!r}; nothing was changed",
                hint=f"as a superuser: ALTER ROLE {sql.Identifier(role).as_string(conn)} CREATEDB; "
                "or use a DSN whose role has it",
            )
        problems: list[tuple[str, str]] = []  # (what, the next step)
        where = self.masked

        def refuse(what: str, step: str) -> None:
            problems.append((what, step))

        for name in present:
            found = facts[name]
            if found.template:
                refuse(
                    f"database {name!r} on {where} is a template database; refusing to drop it",
                    "name a scratch database in the DSN",
                )
                continue
            ours = janitor.is_marked(found.comment, found.oid, MARK)
            if name == target and not ours and found.comment != database.LEGACY_MARK and not force:
                refuse(
                    f"database {name!r} on {where} was not created by this tool",
                    "pass --force to replace it anyway (its schema and data are lost; what belongs to the "
                    "database itself is carried over), or name a scratch database in the DSN",
                )
            elif name != target and not ours:
                refuse(
                    f"database {name!r} on {where} is in the way: a reset of {target!r} builds under that "
                    "name, and it was not created by this tool (--force does not drop it)",
                    "if it is not needed, drop or rename it yourself (DROP DATABASE "
                    f"{sql.Identifier(name).as_string(conn)}), then run db.reset again",
                )
            if not found.may_drop:
                refuse(
                    f"database {name!r} on {where} belongs to role {found.owner!r}; role {role!r} may not "
                    "drop or rename it, so a reset could not replace it",
                    f"connect as {found.owner!r} (or a superuser), or name a database of your own in the DSN",
                )
        kept = [s for s in busy if not s.may_end]
        if busy and not end_sessions:
            refuse(
                f"other clients have sessions on {_names(sorted({s.database for s in busy}))} on {where}: "
                f"{'; '.join(s.describe() for s in busy)}",
                "close them and run db.reset again, or pass --end-sessions to let the reset end them "
                "(their open transactions are rolled back)",
            )
        elif kept:
            refuse(
                f"database {kept[0].database!r} on {where} has sessions this role may not end "
                f"({'; '.join(s.describe() for s in kept)})",
                "close them (or have a superuser run SELECT pg_terminate_backend(pid)) and run db.reset "
                "again",
            )
        for blocker in blockers:
            refuse(f"{blocker} (on {where})", "see above: a reset would lose it")
        if uncarriable:
            refuse(
                f"database {target!r} on {where} has properties of its own that role {role!r} could not "
                f"give the rebuilt database, so they would be lost: {'; '.join(uncarriable)}",
                "connect as a role that may (a superuser), or change or drop those properties yourself",
            )
        drops = self._drops(target, new, old, present)
        if problems:
            self._refuse(problems, drops)
        leftovers = [name for name in (new, old) if name in facts]
        if leftovers:  # more than the database the DSN names: every one, before any is dropped
            say(f"dsn: this reset drops {drops}")
        return facts.get(target), leftovers

    def _sessions_that_stay(self, conn: psycopg.Connection, names: list[str]) -> list[database.Session]:
        """Other clients' sessions on ``names``, after a moment for those that are closing (a
        client that has just disconnected may still be listed for a few milliseconds)."""
        if not names:
            return []
        deadline = time.monotonic() + SESSION_GRACE
        while (busy := database.sessions(conn, names)) and time.monotonic() < deadline:
            time.sleep(0.05)
        return busy

    @staticmethod
    def _drops(target: str, new: str, old: str, present: list[str]) -> str:
        why = {
            target: "replaced by the rebuilt one once it is complete",
            new: "left behind by an interrupted reset",
            old: "left behind by an interrupted reset",
        }
        return ", ".join(f"{name!r} ({why[name]})" for name in (new, old, target) if name in present)

    def _refuse(self, problems: list[tuple[str, str]], drops: str) -> None:
        would = f" (a reset would drop {drops})" if drops else ""
        steps = "; ".join(dict.fromkeys(step for _, step in problems))
        if len(problems) == 1:
            raise BackendError(f"{problems[0][0]}; nothing was changed{would}", hint=steps)
        listing = "\n".join(f"  - {what}" for what, _ in problems)
        raise BackendError(
            f"a reset of {self.dbname!r} on {self.masked} is refused; nothing was changed{would}:\n{listing}",
            hint=steps,
        )

    def _drop_leftovers(self, conn: psycopg.Connection, leftovers: list[str]) -> None:
        """Drop the leftovers of an interrupted reset: ours (marked), and ``_decide`` found no
        one else's session on them (or was told to end them); a killed run's own sessions there
        end with them."""
        for leftover in leftovers:
            say(f"dsn: dropping {leftover!r}, left behind by an interrupted reset")
            with self._server_errors(f"dropping the leftover database {leftover!r}"):
                janitor.drop_database(conn, leftover)

    def _drop_quietly(self, conn: psycopg.Connection, dbname: str) -> bool:
        """Drop ``dbname`` (the database being built: its sessions are ours) after another
        failure, which stays the one reported."""
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

    def _carry(self, conn: psycopg.Connection, new: str, existing: database.Facts) -> None:
        """Give the new database what belongs to the old one itself, then compare the two: the
        swap happens only when nothing would be lost."""
        try:
            with self._server_errors(f"carrying the properties of {existing.name!r} over to {new!r}"):
                failed = database.carry(conn, new, existing)
                rebuilt = database.read(conn, [new])[new]
            lost = database.lost(existing, rebuilt)
            if failed or lost:
                listing = "\n".join(f"  - {line}" for line in failed + lost)
                raise BackendError(
                    f"what belongs to database {existing.name!r} on {self.masked} itself could not all be "
                    f"carried over to the rebuilt one, so the reset stopped before the swap; {new!r} was "
                    f"dropped and {existing.name!r} is unchanged:\n{listing}",
                    hint="connect as a role that may set these (a superuser), or change them yourself first",
                )
        except BaseException:
            self._drop_quietly(conn, new)
            raise

    def _swap(
        self, conn: psycopg.Connection, target: str, new: str, old: str, exists: bool, end_sessions: bool
    ) -> None:
        """``new`` becomes ``target`` in one transaction; the old one, renamed ``old``, is dropped."""
        rename = sql.SQL("ALTER DATABASE {} RENAME TO {}")
        try:
            if not exists:
                with self._server_errors(f"renaming {new!r} to {target!r}"):
                    conn.execute(rename.format(sql.Identifier(new), sql.Identifier(target)))
                return
            for attempt in range(1, SWAP_ATTEMPTS + 1):
                with self._server_errors(f"ending the sessions on {target!r}"):
                    self._end_sessions(conn, target, end_sessions)
                try:
                    with conn.transaction():
                        janitor.mark(conn, target, MARK, TOMBSTONE_NOTE)  # the tombstone is ours to drop
                        conn.execute(rename.format(sql.Identifier(target), sql.Identifier(old)))
                        conn.execute(rename.format(sql.Identifier(new), sql.Identifier(target)))
                    break
                except psycopg.errors.ObjectInUse as exc:
                    if not end_sessions or attempt == SWAP_ATTEMPTS:
                        busy = database.sessions(conn, [target])
                        named = "; ".join(s.describe() for s in busy) or _reason(exc)
                        raise BackendError(
                            f"cannot replace database {target!r} on {self.masked}: sessions connected to it "
                            f"while the new one was built ({named}); nothing was changed",
                            hint=f"stop what connects to {target!r} and run db.reset again"
                            + ("" if end_sessions else ", or pass --end-sessions to let the reset end them"),
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
        try:
            conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(old)))
        except psycopg.Error:
            say(f"dsn: could not drop the old database, now {old!r}; the next db.reset drops it")

    def _end_sessions(self, conn: psycopg.Connection, dbname: str, end_sessions: bool) -> None:
        """With ``end_sessions``, end every other client's session on ``dbname`` (all of which
        ``_decide`` found this role may end); a session that connected meanwhile and may not be
        ended refuses the swap before any is ended. Without it, nothing: the swap's rename
        refuses while any is there."""
        if not end_sessions:
            return
        busy = database.sessions(conn, [dbname])
        kept = [s for s in busy if not s.may_end]
        if kept:
            raise BackendError(
                f"database {dbname!r} on {self.masked} has sessions this role may not end "
                f"({'; '.join(s.describe() for s in kept)}); nothing was changed",
                hint="close them (or have a superuser run SELECT pg_terminate_backend(pid)) and run "
                "db.reset again",
            )
        for session in busy:
            conn.execute("SELECT pg_terminate_backend(%s, %s)", (session.pid, TERMINATE_WAIT_MS))


def _names(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names)
