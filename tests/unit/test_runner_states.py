"""The runner's decisions that need no server: what it does with the connection's transaction
state at a failure and at the end of a file, and the message of a failing statement."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest
from psycopg import pq

from leaddb import runner
from leaddb.errors import BackendError, MigrationError, NonIdempotentMigration
from leaddb.migrations import Migration

Status = pq.TransactionStatus


class FakeConnection:
    """Only what the runner asks of a connection: its transaction state and execute()."""

    def __init__(self, status: Status) -> None:
        self.info = SimpleNamespace(transaction_status=status)
        self.executed: list[str] = []

    def execute(self, sql: str) -> None:
        self.executed.append(sql)


MIGRATION = Migration(
    Path("api/db/migrations/0003_x.sql"), 3, "-- h\nBEGIN;\nCREATE TABLE t (\n  id int\n);\n"
)


@pytest.mark.parametrize(
    ("status", "rolled_back"),
    [
        (Status.INTRANS, True),
        (Status.INERROR, True),  # the failed statement left the transaction aborted: roll it back
        (Status.IDLE, False),
        (Status.ACTIVE, False),
        (Status.UNKNOWN, False),
    ],
)
def test_a_failure_rolls_back_an_open_or_aborted_transaction(status, rolled_back):
    conn = FakeConnection(status)
    assert runner._end_failed_transaction(conn) is rolled_back
    assert conn.executed == (["ROLLBACK"] if rolled_back else [])


class CheckFailed(psycopg.Error):
    """A server error of the end-of-file check, with the message the server would give."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def diag(self):
        return SimpleNamespace(message_primary=self.message)


class CheckingConnection(FakeConnection):
    def __init__(self, status: Status, failure: str | None) -> None:
        super().__init__(status)
        self.failure = failure
        self.broken = False

    def execute(self, sql: str) -> None:
        super().execute(sql)
        if sql == runner.END_OF_FILE and self.failure:
            raise CheckFailed(self.failure)


def test_a_file_that_ends_inside_a_transaction_is_reported_at_its_begin():
    conn = CheckingConnection(Status.INERROR, runner.TRANSACTION_LEFT_OPEN)
    with pytest.raises(MigrationError) as err:
        runner._end_of_file(conn, MIGRATION, Path("."))
    assert conn.executed == [runner.END_OF_FILE, "ROLLBACK"]
    assert str(err.value) == (
        "api/db/migrations/0003_x.sql:2: the file opens a transaction and never commits it; psql -f would "
        "roll it back at the end of the file, so nothing of it was applied\n"
        "  next step: end 0003_x.sql with COMMIT;"
    )


def test_a_file_that_ends_outside_a_transaction_passes_the_check():
    conn = CheckingConnection(Status.IDLE, None)
    runner._end_of_file(conn, MIGRATION, None)
    assert conn.executed == [runner.END_OF_FILE]


def test_another_failure_of_the_check_is_a_backend_error():
    conn = CheckingConnection(Status.INERROR, "permission denied")
    with pytest.raises(BackendError, match="0003_x.sql: the end-of-file check failed: permission denied"):
        runner._end_of_file(conn, MIGRATION, Path("."))
    assert conn.executed == [runner.END_OF_FILE, "ROLLBACK"]


def test_an_unterminated_file_without_begin_is_reported_at_line_1():
    migration = Migration(Path("0001_x.sql"), 1, "START TRANSACTION;\n")
    assert str(runner.unterminated_transaction(migration, None)).startswith("0001_x.sql:1: ")
    other = Migration(Path("0001_x.sql"), 1, "SELECT 1;\nSAVEPOINT a;\n")
    assert str(runner.unterminated_transaction(other, None)).startswith("0001_x.sql:1: ")


def failure(position: str | None, *, reapply: bool = False, rolled_back: bool = True):
    diag = SimpleNamespace(
        statement_position=position,
        message_primary='column "nope" does not exist',
        sqlstate="42703",
        message_detail=None,
    )
    exc = SimpleNamespace(diag=diag)
    statement = MIGRATION.statements[1]
    return runner._failure(exc, MIGRATION, statement, reapply, Path("."), rolled_back)


def test_the_error_line_is_where_the_server_points_inside_the_statement():
    assert str(failure(None)).startswith("api/db/migrations/0003_x.sql:3: ")
    assert str(failure("1")).startswith("api/db/migrations/0003_x.sql:3: ")
    assert str(failure("18")).startswith("api/db/migrations/0003_x.sql:4: ")  # 'id' on the next line


def test_a_failure_message_names_the_state_left_behind():
    error = failure(None)
    assert isinstance(error, MigrationError) and not isinstance(error, NonIdempotentMigration)
    assert str(error) == (
        'api/db/migrations/0003_x.sql:3: column "nope" does not exist [SQLSTATE 42703]\n'
        "  statement (line 3):\n    CREATE TABLE t (\n      id int\n    )\n"
        "  next step: fix 0003_x.sql; the file's transaction was rolled back and the files before it "
        "stay applied"
    )
    kept = failure(None, rolled_back=False)
    assert str(kept).endswith(
        "next step: fix 0003_x.sql; 0003_x.sql has no transaction of its own: its statements before this "
        "one stay applied"
    )
    again = failure(None, reapply=True)
    assert isinstance(again, NonIdempotentMigration)
    assert str(again).startswith(
        "NON_IDEMPOTENT_MIGRATION: api/db/migrations/0003_x.sql:3: applying the file a second time "
        "fails: column"
    )
