"""Which statements begin, end or mark a transaction (``migrations.transaction_control``: the
runner's "was the failing file's transaction rolled back" and the one-transaction rule)."""

from __future__ import annotations

import pytest

from leaddb.migrations import Statement, transaction_control


def kind(sql: str) -> str | None:
    return transaction_control(Statement(sql, 1, 1))


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("BEGIN", "begin"),
        ("begin", "begin"),  # any case
        ("Begin ISOLATION LEVEL SERIALIZABLE", "begin"),
        ("START TRANSACTION", "start"),
        ("COMMIT", "commit"),
        ("END", "commit"),
        ("COMMIT/* a comment */", "commit"),
        ("COMMIT AND CHAIN", "commit_chain"),
        ("ROLLBACK", "rollback"),
        ("ABORT", "rollback"),
        ("ROLLBACK AND CHAIN", "rollback_chain"),
        ("SAVEPOINT a", "savepoint"),
        ("RELEASE SAVEPOINT a", "release"),
        ("ROLLBACK TO SAVEPOINT a", "rollback_to"),
        ("PREPARE TRANSACTION 'x'", "prepare"),
        ("COMMIT PREPARED 'x'", "commit_prepared"),
    ],
)
def test_transaction_control_statements_by_kind(sql, expected):
    assert kind(sql) == expected


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "CREATE TABLE t (id int)",
        "PREPARE q AS SELECT 1",  # PREPARE, but a query's
        "BEGINNING",  # not a word of the list, though it starts like one
        "  ",
        "-- BEGIN",
        "1",
    ],
)
def test_any_other_statement_is_none(sql):
    assert kind(sql) is None
