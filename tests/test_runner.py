"""The in-process runner against a real server: psql semantics, atomicity, errors, locking."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import psycopg
import pytest

from leaddb import catalog, runner
from leaddb.errors import MigrationError, NonIdempotentMigration
from leaddb.migrations import Migration


def migration(number: int, text: str, name: str = "step") -> Migration:
    return Migration(Path(f"{number:04d}_{name}.sql"), number, text)


def relations(conninfo: str) -> set[str]:
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute("SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace")
        return {r[0] for r in rows}


def test_a_failing_file_leaves_nothing_and_earlier_files_stay(fresh_db):
    db = fresh_db(None)
    good = migration(1, "BEGIN;\nCREATE TABLE kept (id int);\nCOMMIT;\n", "good")
    bad = migration(
        2, "BEGIN;\nCREATE TABLE half (id int);\nCREATE INDEX half_idx ON half (nope);\nCOMMIT;\n", "bad"
    )
    with pytest.raises(MigrationError) as err:
        runner.apply(db, [good, bad])
    message = str(err.value)
    assert "0002_bad.sql:3:" in message
    assert "CREATE INDEX half_idx ON half (nope)" in message
    assert "SQLSTATE 42703" in message
    assert relations(db) == {"kept"}


def test_reapply_error_is_non_idempotent_with_file_line_and_statement(fresh_db):
    db = fresh_db(None)
    text = "BEGIN;\nCREATE TABLE IF NOT EXISTS t (id int);\n\nCREATE INDEX t_idx\n  ON t (id);\nCOMMIT;\n"
    runner.apply(db, [migration(1, text)])
    with pytest.raises(NonIdempotentMigration) as err:
        runner.apply(db, [migration(1, text)], reapply=True)
    message = str(err.value)
    assert message.startswith("NON_IDEMPOTENT_MIGRATION: 0001_step.sql:4:")
    assert "CREATE INDEX t_idx\n      ON t (id)" in message
    assert "SQLSTATE 42P07" in message


def test_statements_outside_a_transaction_autocommit_like_psql(fresh_db):
    db = fresh_db(None)
    text = "CREATE TABLE first (id int);\nCREATE TABLE first (id int);\n"
    with pytest.raises(MigrationError, match="0001_step.sql:2:"):
        runner.apply(db, [migration(1, text)])
    assert relations(db) == {"first"}  # psql -f without BEGIN keeps the first statement too


def test_error_position_inside_a_multiline_statement(fresh_db):
    db = fresh_db(None)
    text = "SELECT 1;\nSELECT\n  1,\n  no_such_column;\n"
    with pytest.raises(MigrationError, match="0001_step.sql:4:"):
        runner.apply(db, [migration(1, text)])


@pytest.mark.needs_psql
def test_runner_result_equals_psql_f(fresh_db, migration_files):
    ours, theirs = fresh_db(None), fresh_db(None)
    runner.apply(ours, migration_files)
    for m in migration_files:
        subprocess.run(
            ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", theirs, "-f", str(m.path)],
            check=True,
            capture_output=True,
        )
    assert catalog.snapshot_of(ours) == catalog.snapshot_of(theirs)


def test_concurrent_appliers_are_serialised(fresh_db, migration_files):
    db = fresh_db(None)
    errors: list[BaseException] = []

    def apply_all():
        try:
            runner.apply(db, migration_files)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=apply_all) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "an applier hung"
    assert errors == []
    single = fresh_db(None)
    runner.apply(single, migration_files)
    assert catalog.snapshot_of(db) == catalog.snapshot_of(single)


def test_a_file_that_never_commits_is_refused_and_leaves_nothing(fresh_db):
    db = fresh_db(None)
    unterminated = migration(1, "-- no COMMIT\nBEGIN;\nCREATE TABLE never_committed (id int);\n", "open")
    after = migration(2, "CREATE TABLE after (id int);\n", "after")
    with pytest.raises(MigrationError) as err:
        runner.apply(db, [unterminated, after])
    assert "0001_open.sql:2: the file opens a transaction and never commits it" in str(err.value)
    assert relations(db) == set()  # as psql -f: the open transaction ends with the session


def test_settings_do_not_leak_from_one_file_into_the_next(fresh_db):
    db = fresh_db(None)
    files = [
        migration(1, "CREATE SCHEMA IF NOT EXISTS elsewhere;\nSET search_path = elsewhere;\n", "set"),
        migration(2, "CREATE TABLE where_am_i (id int);\n", "create"),
    ]
    runner.apply(db, files)
    assert relations(db) == {"where_am_i"}  # public, as with one psql -f per file


def test_a_failure_in_a_file_without_begin_says_earlier_statements_stay(fresh_db):
    db = fresh_db(None)
    with pytest.raises(MigrationError) as err:
        runner.apply(db, [migration(1, "CREATE TABLE kept (id int);\nCREATE TABLE kept (id int);\n")])
    assert "has no transaction of its own: its statements before this one stay applied" in str(err.value)


def test_unfinished_last_statement_is_a_clear_syntax_error():
    from leaddb.migrations import split_statements

    with pytest.raises(MigrationError, match=r"f.sql:2: syntax error"):
        split_statements("SELECT 1;\nCREATE TABLE b (y int", "f.sql")
