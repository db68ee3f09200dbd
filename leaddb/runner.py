"""Apply migration files the way ``psql -v ON_ERROR_STOP=1 -f FILE`` does, in-process.

psql sends a file's statements one at a time in autocommit mode (a file's own
``BEGIN; … COMMIT;`` makes it one transaction) and stops at the first error, which
rolls back the open transaction when the session ends. This runner does exactly
that over one psycopg connection, so it pays for no process start-up per file.
Concurrent appliers are serialised by a session-level advisory lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import pq

from leaddb.errors import BackendError, MigrationError, NonIdempotentMigration
from leaddb.migrations import Migration, Statement

# The rules of a session, shared by both appliers (in-process here; psql inside the Docker
# container, ``leaddb.backends.docker.psql``): one definition of each.
#
# pg_advisory_lock key shared by every applier of this schema: "leaddb" in ASCII
ADVISORY_LOCK_KEY = 0x6C6561646462
LOCK = f"SELECT pg_advisory_lock({ADVISORY_LOCK_KEY})"
UNLOCK = f"SELECT pg_advisory_unlock({ADVISORY_LOCK_KEY})"
# The end of every file is the end of a ``psql -f`` session: no transaction left open (inside
# one, now() is that transaction's start, earlier than this statement's), no setting carried
# into the next file.
TRANSACTION_LEFT_OPEN = "leaddb: the file before this check left a transaction open"
END_OF_FILE = (
    "DO $$BEGIN IF now() <> statement_timestamp() THEN "
    f"RAISE EXCEPTION '{TRANSACTION_LEFT_OPEN}'; END IF; RESET ALL; END$$"
)


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


def connect(conninfo: str, **kwargs) -> psycopg.Connection:
    return psycopg.connect(conninfo, autocommit=True, prepare_threshold=None, **kwargs)


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
    try:
        conn = connect(conninfo)
    except psycopg.OperationalError as exc:
        # psycopg's message names host, port and database, never the password
        raise BackendError(
            f"cannot connect to the database: {str(exc).strip()}",
            hint="check that the server runs (`invoke db.reset` creates one) and the DSN is right",
        ) from None
    with conn:
        notices: list[str] = []
        conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
        conn.execute(LOCK)
        result.lock_wait_seconds = time.perf_counter() - started
        for migration in migrations:
            file_started = time.perf_counter()
            notices.clear()
            for statement in migration.statements:
                try:
                    conn.execute(statement.sql)  # type: ignore[arg-type]  # no params: sent as written
                except psycopg.Error as exc:
                    if conn.broken:
                        raise _connection_lost(exc, migration, statement, project_dir) from None
                    in_transaction = _end_failed_transaction(conn)
                    raise _failure(exc, migration, statement, reapply, project_dir, in_transaction) from None
            _end_of_file(conn, migration, project_dir)
            file_result = FileResult(
                migration, time.perf_counter() - file_started, len(migration.statements), tuple(notices)
            )
            result.files.append(file_result)
            if on_file:
                on_file(file_result)
        conn.execute(UNLOCK)
    result.seconds = time.perf_counter() - started
    return result


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
    state = (
        "the file's transaction was rolled back and the files before it stay applied"
        if rolled_back
        else f"{migration.name} has no transaction of its own: its statements before this one stay applied"
    )
    if reapply:
        return NonIdempotentMigration(
            f"{where}: applying the file a second time fails: {text}",
            hint="make the statement idempotent (IF NOT EXISTS, a guarded DO block, "
            f"ADD COLUMN IF NOT EXISTS); {state}",
        )
    return MigrationError(f"{where}: {text}", hint=f"fix {migration.name}; {state}")
