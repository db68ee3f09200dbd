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

# pg_advisory_lock key shared by every applier of this schema: "leaddb" in ASCII
ADVISORY_LOCK_KEY = 0x6C6561646462


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
        conn.execute("SET client_min_messages = notice")
        conn.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
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
                    _end_failed_transaction(conn)
                    raise _failure(exc, migration, statement, reapply, project_dir) from None
            file_result = FileResult(
                migration, time.perf_counter() - file_started, len(migration.statements), tuple(notices)
            )
            result.files.append(file_result)
            if on_file:
                on_file(file_result)
        conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
    result.seconds = time.perf_counter() - started
    return result


def _end_failed_transaction(conn: psycopg.Connection) -> None:
    if conn.info.transaction_status in (pq.TransactionStatus.INTRANS, pq.TransactionStatus.INERROR):
        conn.execute("ROLLBACK")


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
    exc: psycopg.Error, migration: Migration, statement: Statement, reapply: bool, project_dir: Path | None
) -> MigrationError | NonIdempotentMigration:
    diag = exc.diag
    line = statement.line
    if diag.statement_position:
        line += statement.sql.count("\n", 0, int(diag.statement_position) - 1)
    where = f"{migration.display(project_dir)}:{line}"
    sqlstate = diag.sqlstate or "?????"
    message = diag.message_primary or str(exc).strip()
    body = "\n".join("    " + text for text in statement.sql.splitlines())
    detail = f"\n  detail: {diag.message_detail}" if diag.message_detail else ""
    text = f"{where}: {message} [SQLSTATE {sqlstate}]{detail}\n  statement (line {statement.line}):\n{body}"
    if reapply:
        return NonIdempotentMigration(
            f"{where}: applying the file a second time fails: {message} [SQLSTATE {sqlstate}]{detail}\n"
            f"  statement (line {statement.line}):\n{body}",
            hint="make the statement idempotent (IF NOT EXISTS, a guarded DO block, "
            "ADD COLUMN IF NOT EXISTS); the file's transaction was rolled back",
        )
    return MigrationError(
        text,
        hint=f"fix {migration.name}; its transaction was rolled back and the files before it stay applied",
    )
