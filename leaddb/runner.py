"""Apply migration files the way ``psql -v ON_ERROR_STOP=1 -f FILE`` does, in-process.

psql sends a file's statements one at a time in autocommit mode (a file's own
``BEGIN; … COMMIT;`` makes it one transaction) and stops at the first error, which
rolls back the open transaction when the session ends. This runner does exactly
that over one psycopg connection, so it pays for no process start-up per file.
Concurrent appliers are serialised by a session-level advisory lock.

A file that is one transaction (``Migration.single_transaction``: every migration the spec
prints) goes to the server in one write and costs one round trip: its statements are
pipelined (libpq's pipeline mode) with a flush request after each and one sync at the end.
The server still runs them one by one, in order, inside the file's own transaction, and
skips the rest after an error, as ``ON_ERROR_STOP`` does. The flush after each statement
makes the server report each one as it completes, so a failure - an error, or the server
dying mid-file - names the statement exactly, as sending them one at a time does. (One
simple-protocol message holding the whole file would run the same way but report nothing
until the whole message ends: a server killed mid-file would leave no trace of which
statement it was running.) Any other file is sent statement by statement, as psql does:
its statements commit one by one.

A statement that waits or runs long is watched and bounded (``leaddb.waits``: a line says what
it waits on, the limits cancel it). An interrupted apply - Ctrl-C, SIGTERM, SIGHUP - does not
leave its server session behind: the statement in progress is cancelled, and the session is
ended and awaited from another one (:func:`end_session`), so its transaction is rolled back and
the apply lock is free before the task reports what it left.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import generators, pq
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.pq.abc import PGresult

from leaddb import masking, waits
from leaddb.errors import BackendError, MigrationError, NonIdempotentMigration
from leaddb.migrations import Migration, Statement, transaction_control

# The rules of a session, shared by both appliers (in-process here; psql inside the Docker
# container, ``leaddb.backends.docker.psql``): one definition of each.
#
# pg_advisory_lock key shared by every applier of this schema: "leaddb" in ASCII
ADVISORY_LOCK_KEY = 0x6C6561646462
LOCK = f"SELECT pg_advisory_lock({ADVISORY_LOCK_KEY})"
APPLY_LOCK = "the apply lock (the advisory lock every apply of this database takes)"
# what the sessions of this process's applies are called on the server (pg_stat_activity)
APPLICATION = f"leaddb apply (client pid {os.getpid()})"
UNLOCK = f"SELECT pg_advisory_unlock({ADVISORY_LOCK_KEY})"
# The end of every file is the end of a ``psql -f`` session: no transaction left open (inside
# one, now() is that transaction's start, earlier than this statement's), no setting carried
# into the next file. The check needs a message of its own (within one simple-protocol message
# every transaction starts at the message's timestamp) and the simple protocol (the extended
# one stamps each of its messages): it follows every file sent statement by statement. A
# single-transaction file cannot leave one open, so only the reset follows it, in its pipeline.
TRANSACTION_LEFT_OPEN = "leaddb: the file before this check left a transaction open"
RESET_SESSION = "RESET ALL"
END_OF_FILE = (
    "DO $$BEGIN IF now() <> statement_timestamp() THEN "
    f"RAISE EXCEPTION '{TRANSACTION_LEFT_OPEN}'; END IF; {RESET_SESSION}; END$$"
)
_SUCCEEDED = (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK, pq.ExecStatus.EMPTY_QUERY)
_COPY = (pq.ExecStatus.COPY_IN, pq.ExecStatus.COPY_OUT, pq.ExecStatus.COPY_BOTH)


@dataclass(frozen=True)
class FileResult:
    migration: Migration
    seconds: float
    statements: int
    notices: tuple[str, ...] = ()


@dataclass
class ApplyResult:
    files: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0
    lock_wait_seconds: float = 0.0

    @property
    def notices(self) -> int:
        return sum(len(f.notices) for f in self.files)


# The settings every session of the tool pins, whatever the server, the database or the role
# say (``ALTER DATABASE … SET``, ``ALTER ROLE … [IN DATABASE …] SET``, the server's file): they
# decide where DDL puts what it creates, how it parses the migrations' literals, and how the
# catalog spells what it reads back. A role's ``search_path = myschema, public`` would otherwise
# put every table into ``myschema``, and read every definition back schema-qualified. Each is a
# setting any role may set (a connection that sets a superuser-only one is refused). Sent as the
# connection's startup options, so they are the session's defaults: ``RESET ALL`` (the end of
# every file, ``END_OF_FILE``) returns to them, not to the role's. Left alone on purpose: the
# timeouts (their own rules), settings that fail loudly rather than change the result
# (``default_transaction_read_only``, ``row_security``), and output-only ones (``lc_*``,
# ``client_min_messages``, ``bytea_output``).
SESSION_SETTINGS = (
    ("search_path", "public"),  # the spec's schema; objects go there, names print unqualified
    ("default_tablespace", ""),  # the database's own tablespace
    ("default_table_access_method", "heap"),
    ("check_function_bodies", "on"),  # a function body is checked when it is created
    ("standard_conforming_strings", "on"),  # a backslash in a '…' literal is a backslash
    ("transform_null_equals", "off"),  # "x = NULL" stays what it says
    ("array_nulls", "on"),
    ("quote_all_identifiers", "off"),  # definitions read back as PostgreSQL normally spells them
    ("DateStyle", "ISO,MDY"),
    ("IntervalStyle", "postgres"),
    ("TimeZone", "UTC"),  # a timestamptz literal means one instant (the postgres image's zone)
    ("extra_float_digits", "1"),
)
SESSION_OPTIONS = " ".join(f"-c {name}={value}" for name, value in SESSION_SETTINGS)
# Names and definitions come back as text in any database: a SQL_ASCII one would otherwise hand
# them over as bytes (b'leads'), and migrations are UTF-8 files.
CLIENT_ENCODING = "UTF8"


# Every session says whose it is in pg_stat_activity: a session a killed run left running on
# the server (a statement the server has not yet noticed the client is gone for) is told from
# other people's by it.
APPLICATION_PREFIX = "leaddb "


def session_conninfo(conninfo: str, extra_options: str = "") -> str:
    """``conninfo`` with ``extra_options`` (a task's limits, ``leaddb.waits``) and the session's
    pinned settings appended to its own ``options`` (or to ``PGOPTIONS``, which libpq reads only
    when there are none), so the pinned ones win over all of them."""
    given = conninfo_to_dict(conninfo).get("options") or os.environ.get("PGOPTIONS", "")
    options = " ".join(part for part in (given, extra_options, SESSION_OPTIONS) if part)
    return make_conninfo(
        conninfo,
        options=options,
        client_encoding=CLIENT_ENCODING,
        application_name=f"{APPLICATION_PREFIX}client pid {os.getpid()}",
    )


def session_environment(extra_options: str = "") -> dict[str, str]:
    """The same settings for a ``psql`` that reads them from its environment."""
    options = " ".join(part for part in (extra_options, SESSION_OPTIONS) if part)
    return {"PGOPTIONS": options, "PGCLIENTENCODING": CLIENT_ENCODING}


def connect(conninfo: str, *, options: str = "", **kwargs) -> psycopg.Connection:
    """A session of the tool's: autocommit, the pinned settings (``SESSION_SETTINGS``) after
    ``options`` (a keyword ``options`` would replace them, so it is merged here)."""
    return psycopg.connect(
        session_conninfo(conninfo, options), autocommit=True, prepare_threshold=None, **kwargs
    )


def apply(
    conninfo: str,
    migrations: Sequence[Migration],
    *,
    reapply: bool = False,
    project_dir: Path | None = None,
    on_file: Callable[[FileResult], None] | None = None,
) -> ApplyResult:
    """Apply every file in order; the first error stops the run, as ON_ERROR_STOP does.

    ``reapply`` marks a run over files already applied: any error there is
    ``NON_IDEMPOTENT_MIGRATION``.
    """
    result = ApplyResult()
    started = time.perf_counter()
    limits = waits.current()
    try:
        conn = connect(conninfo, application_name=APPLICATION, options=limits.server_options())
    except psycopg.Error as exc:
        # psycopg's message names host, port and database; whatever came from the DSN is scrubbed
        raise BackendError(
            f"cannot connect to the database: {masking.scrub(str(exc).strip(), conninfo)}",
            hint="check that the server runs (`invoke db.reset` creates one) and the DSN is right",
        ) from None
    pid = conn.info.backend_pid
    watcher = waits.Watcher(conninfo, pid=pid, limits=limits, named_locks={ADVISORY_LOCK_KEY: APPLY_LOCK})
    doing = [APPLY_LOCK]  # what runs, for the message when the apply is interrupted
    try:
        with watcher:
            notices: list[str] = []
            conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
            _take_lock(conn, watcher)
            result.lock_wait_seconds = time.perf_counter() - started
            pipeline = psycopg.Pipeline.is_supported()  # libpq 14 or later
            for migration in migrations:
                file_started = time.perf_counter()
                notices.clear()
                doing[0] = migration.display(project_dir)  # once a file: it costs a path's parse
                if pipeline and migration.single_transaction:
                    _apply_in_one_round_trip(conn, migration, reapply, project_dir, watcher, doing[0])
                else:
                    _apply_statement_by_statement(conn, migration, reapply, project_dir, watcher)
                watcher.idle()
                file_result = FileResult(
                    migration, time.perf_counter() - file_started, len(migration.statements), tuple(notices)
                )
                result.files.append(file_result)
                if on_file:
                    on_file(file_result)
            doing[0] = ""
            conn.execute(UNLOCK)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP (leaddb.errors.Stopped)
        exc.add_note(end_session(conn, conninfo, pid, doing[0]))
        raise
    finally:
        conn.close()  # not `with conn`: its exit would try a rollback in pipeline mode, and log that
    result.seconds = time.perf_counter() - started
    return result


def _take_lock(conn: psycopg.Connection, watcher: waits.Watcher) -> None:
    """The apply lock: another applier of this database may hold it (reported while it does)."""
    watcher.running("this apply")
    try:
        conn.execute(LOCK)
    except psycopg.Error as exc:
        verdict = watcher.verdict(exc)
        if verdict is not None:
            raise verdict.error(None, "nothing was applied") from None
        lost = "the connection to the server was lost" if conn.broken else "the server refused it"
        raise BackendError(
            f"waiting for {APPLY_LOCK}: {lost} ({' '.join(str(exc).split())})",
            hint="check that the server runs, then run the task again; nothing was applied",
        ) from None
    watcher.idle()


def end_session(conn: psycopg.Connection, conninfo: str, pid: int, doing: str) -> str:
    """After an interruption: the apply's server session must not outlive it. psycopg cancels a
    statement in progress when KeyboardInterrupt reaches it, and closing the connection ends an
    idle session; a session still there (a cancel that did not land, a wait the server never
    noticed the client leave) is terminated, and awaited, from a session of our own. What became
    of it, in words, for the task's message."""
    try:
        conn.close()
    except Exception:  # noqa: BLE001 - whatever state it was in, the check below decides
        pass
    who = f"the apply's session on the server (pid {pid})"
    try:
        _, left = waits.terminate(conninfo, APPLICATION, pid=pid)
    except psycopg.Error as exc:
        reason = masking.scrub(" ".join(str(exc).split()), conninfo)
        return (
            f"{who} could not be checked ({reason}): if it is still there it holds the apply lock "
            f"until it ends (SELECT pg_terminate_backend({pid}) ends it)"
        )
    if left:
        return f"{who} is still there and holds the apply lock: SELECT pg_terminate_backend({pid}) ends it"
    running = f": {doing} was cancelled and its transaction rolled back" if doing else ""
    return f"{who} was ended{running}; the apply lock is free"


def _apply_statement_by_statement(
    conn: psycopg.Connection,
    migration: Migration,
    reapply: bool,
    project_dir: Path | None,
    watcher: waits.Watcher,
) -> None:
    for statement in migration.statements:
        in_transaction = conn.info.transaction_status == pq.TransactionStatus.INTRANS
        watcher.running(f"{migration.display(project_dir)}:{statement.line}")
        try:
            conn.execute(statement.sql)  # type: ignore[arg-type]  # no params: sent as written
        except psycopg.Error as exc:
            if conn.broken:
                raise _connection_lost(exc, migration, statement, project_dir) from None
            if conn.info.transaction_status == pq.TransactionStatus.ACTIVE:  # left in COPY mode
                raise _copy_refused(conn, migration, statement, project_dir, in_transaction) from None
            rolled_back = _end_failed_transaction(conn) or transaction_control(statement) == "commit"
            verdict = watcher.verdict(exc)
            if verdict is not None:
                raise _timed_out(verdict, migration, statement, project_dir, rolled_back) from None
            raise _failure(exc, migration, statement, reapply, project_dir, rolled_back) from None
    watcher.idle()
    _end_of_file(conn, migration, project_dir)


def _apply_in_one_round_trip(
    conn: psycopg.Connection,
    migration: Migration,
    reapply: bool,
    project_dir: Path | None,
    watcher: waits.Watcher,
    shown: str,
) -> None:
    """Pipeline the file's statements, then the session reset, with one sync (module docstring).
    ``shown``: the file as messages name it."""
    pgconn, encoding = conn.pgconn, conn.info.encoding
    queries = [s.sql for s in migration.statements] + [RESET_SESSION]
    pgconn.enter_pipeline_mode()
    for sql in queries:
        pgconn.send_query_params(sql.encode(encoding), None)
        pgconn.send_flush_request()  # the server sends each statement's outcome as it completes
    pgconn.pipeline_sync()
    completed, error = 0, None  # statements the server reported done; the error of the next one
    try:
        conn.wait(generators.send(pgconn))
        for _ in queries:
            # the server starts a statement when it has reported the one before
            watcher.running(
                f"{shown}:{migration.statements[completed].line}"
                if completed < len(migration.statements)
                else f"{shown}: the end-of-file reset"
            )
            result = conn.wait(generators.fetch(pgconn))
            if result is not None and result.status in _COPY:
                raise _copy_refused(conn, migration, migration.statements[completed], project_dir, True)
            if result is None or result.status not in _SUCCEEDED:
                error = _result_error(result, encoding)
                break
            conn.wait(generators.fetch(pgconn))  # the end of this statement's results
            completed += 1
        while (result := conn.wait(generators.fetch(pgconn))) is None or (
            result.status != pq.ExecStatus.PIPELINE_SYNC
        ):
            pass  # the statements the server skipped after the error, up to the sync
    except psycopg.Error as exc:
        # the results that arrived say how far the server got; an error it sent says why
        statement = migration.statements[min(completed, len(migration.statements) - 1)]
        raise _connection_lost(error or exc, migration, statement, project_dir) from None
    pgconn.exit_pipeline_mode()
    if error is None:
        return
    _end_failed_transaction(conn)
    if completed == len(migration.statements):  # the file committed; the reset after it failed
        raise BackendError(
            f"{migration.display(project_dir)}: the end-of-file reset failed: {str(error).strip()}"
        )
    # whichever statement failed, COMMIT included, the file's one transaction left nothing
    statement = migration.statements[completed]
    verdict = watcher.verdict(error)
    if verdict is not None:
        raise _timed_out(verdict, migration, statement, project_dir, True)
    raise _failure(error, migration, statement, reapply, project_dir, True)


def _result_error(result: PGresult | None, encoding: str) -> psycopg.Error:
    if result is None:
        return psycopg.InterfaceError("the server sent no result for the statement")
    return psycopg.errors.error_from_result(result, encoding=encoding)


def _copy_refused(
    conn: psycopg.Connection,
    migration: Migration,
    statement: Statement,
    project_dir: Path | None,
    in_transaction: bool,
) -> MigrationError:
    """COPY FROM STDIN / TO STDOUT: psql reads the data that follows in the file or prints the
    rows; the runner has neither. The connection is left in COPY mode: close it, which ends
    the file's open transaction too."""
    conn.close()
    state = (
        "the file's transaction was rolled back and the files before it stay applied"
        if in_transaction
        else f"{migration.name} has no transaction of its own: its statements before this one stay applied"
    )
    return MigrationError(
        f"{migration.display(project_dir)}:{statement.line}: COPY to or from the client (STDIN, STDOUT) "
        f"is not supported in a migration:\n    {statement.sql}",
        hint=f"load data with INSERT, or COPY from a file on the server; {state}",
    )


def _end_failed_transaction(conn: psycopg.Connection) -> bool:
    """Roll back an open transaction; whether there was one (so nothing of the file stayed)."""
    if conn.info.transaction_status in (pq.TransactionStatus.INTRANS, pq.TransactionStatus.INERROR):
        conn.execute("ROLLBACK")
        return True
    return False


def _end_of_file(conn: psycopg.Connection, migration: Migration, project_dir: Path | None) -> None:
    """What the end of a ``psql -f`` session does: an open transaction is rolled back and
    session settings are gone. psql does the rollback silently; a file that opens a
    transaction and never commits it is a bug, so it is reported."""
    try:
        conn.execute(END_OF_FILE)
    except psycopg.Error as exc:
        if conn.broken:
            raise _connection_lost(exc, migration, migration.statements[-1], project_dir) from None
        _end_failed_transaction(conn)
        if exc.diag.message_primary == TRANSACTION_LEFT_OPEN:
            raise unterminated_transaction(migration, project_dir) from None
        raise BackendError(
            f"{migration.display(project_dir)}: the end-of-file check failed: {str(exc).strip()}"
        ) from None


def unterminated_transaction(migration: Migration, project_dir: Path | None) -> MigrationError:
    opened = next((s for s in migration.statements if s.sql.upper() in ("BEGIN", "START TRANSACTION")), None)
    return MigrationError(
        f"{migration.display(project_dir)}:{opened.line if opened else 1}: the file opens a transaction and "
        "never commits it; psql -f would roll it back at the end of the file, so nothing of it was applied",
        hint=f"end {migration.name} with COMMIT;",
    )


def _connection_lost(
    exc: psycopg.Error, migration: Migration, statement: Statement, project_dir: Path | None
) -> MigrationError:
    """The server went away mid-file: nothing is wrong with the file, and nothing of it was committed
    unless the file itself commits statement by statement (no BEGIN)."""
    where = f"{migration.display(project_dir)}:{statement.line}"
    reason = " ".join(str(exc).split())
    return MigrationError(
        f"{where}: the connection to the server was lost while applying this statement ({reason})",
        hint=f"start the server again and re-run the task; {migration.name}'s open transaction was "
        "rolled back by the server, the files before it stay applied",
    )


def _timed_out(
    verdict: waits.Verdict,
    migration: Migration,
    statement: Statement,
    project_dir: Path | None,
    rolled_back: bool,
):
    """The watcher cancelled ``statement`` past a limit: its line, the file and line, and what
    stays."""
    return verdict.error(
        f"{migration.display(project_dir)}:{statement.line}",
        left_state(migration, rolled_back),
        statement.sql,
    )


def left_state(migration: Migration, rolled_back: bool) -> str:
    return (
        "the file's transaction was rolled back and the files before it stay applied"
        if rolled_back
        else f"{migration.name} has no transaction of its own: its statements before this one stay applied"
    )


def _failure(
    exc: psycopg.Error,
    migration: Migration,
    statement: Statement,
    reapply: bool,
    project_dir: Path | None,
    in_transaction: bool,
) -> MigrationError | NonIdempotentMigration:
    diag = exc.diag
    line = statement.line
    if diag.statement_position:
        line += statement.sql.count("\n", 0, int(diag.statement_position) - 1)
    return migration_failure(
        migration,
        statement,
        line=line,
        message=diag.message_primary or str(exc).strip(),
        sqlstate=diag.sqlstate,
        details=[f"detail: {diag.message_detail}"] if diag.message_detail else [],
        reapply=reapply,
        project_dir=project_dir,
        rolled_back=in_transaction,
    )


def migration_failure(
    migration: Migration,
    statement: Statement | None,
    *,
    line: int,
    message: str,
    sqlstate: str | None,
    details: list[str],
    reapply: bool,
    project_dir: Path | None,
    rolled_back: bool,
) -> MigrationError | NonIdempotentMigration:
    """One message for a failing statement, whichever way it was applied (in-process or psql)."""
    where = f"{migration.display(project_dir)}:{line}"
    extra = "".join(f"\n  {d}" for d in details)
    body = "\n".join("    " + text for text in statement.sql.splitlines()) if statement else ""
    start = statement.line if statement else line
    text = f"{message} [SQLSTATE {sqlstate or '?????'}]{extra}\n  statement (line {start}):\n{body}"
    state = left_state(migration, rolled_back)
    if sqlstate == "42501":  # insufficient_privilege: the role, not the file, is at fault
        return MigrationError(
            f"{where}: {text}",
            hint="the role in the connection lacks this privilege: connect as the schema's owner, "
            f"or grant it; {state}",
        )
    if reapply:
        return NonIdempotentMigration(
            f"{where}: applying the file a second time fails: {text}",
            hint="make the statement idempotent (IF NOT EXISTS, a guarded DO block, "
            f"ADD COLUMN IF NOT EXISTS); {state}",
        )
    return MigrationError(f"{where}: {text}", hint=f"fix {migration.name}; {state}")
