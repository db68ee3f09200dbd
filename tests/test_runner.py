"""The in-process runner against a real server: psql semantics, atomicity, errors, locking.

A file that is one transaction goes to the server in one round trip (a pipeline) where libpq
has pipeline mode, statement by statement otherwise; the tests that take ``send`` run both
ways and expect the same outcome and the same message."""

from __future__ import annotations

import subprocess
import threading
import time
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


@pytest.fixture(params=["one round trip", "statement by statement"])
def send(request, monkeypatch):
    """How single-transaction files are sent: pipelined, or one statement at a time (libpq < 14)."""
    if request.param == "statement by statement":
        monkeypatch.setattr(psycopg.Pipeline, "is_supported", classmethod(lambda cls: False))
    return request.param


def test_a_failing_file_leaves_nothing_and_earlier_files_stay(fresh_db, send):
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


def test_reapply_error_is_non_idempotent_with_file_line_and_statement(fresh_db, send):
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

    with pytest.raises(MigrationError, match=r'f.sql:2: rule "plain SQL": syntax error'):
        split_statements("SELECT 1;\nCREATE TABLE b (y int", "f.sql")


def test_single_transaction_files_go_in_one_round_trip_and_others_statement_by_statement(
    fresh_db, monkeypatch
):
    sent = []
    for way in ("_apply_in_one_round_trip", "_apply_statement_by_statement"):
        original = getattr(runner, way)
        monkeypatch.setattr(
            runner,
            way,
            lambda conn, m, *args, _way=way, _f=original: (sent.append((m.name, _way)), _f(conn, m, *args)),
        )
    db = fresh_db(None)
    runner.apply(
        db,
        [
            migration(1, "BEGIN;\nCREATE TABLE a (id int);\nCOMMIT;\n", "one"),
            migration(2, "CREATE TABLE b (id int);\n", "two"),
        ],
    )
    assert sent == [
        ("0001_one.sql", "_apply_in_one_round_trip"),
        ("0002_two.sql", "_apply_statement_by_statement"),
    ]
    assert relations(db) == {"a", "b"}


def test_each_statement_of_a_transaction_sees_the_ones_before_it(fresh_db, send):
    db = fresh_db(None)
    text = (
        "BEGIN;\nCREATE SCHEMA elsewhere;\nSET LOCAL search_path = elsewhere;\n"
        "CREATE TABLE here (id int);\nINSERT INTO here VALUES (1);\nCOMMIT;\n"
    )
    runner.apply(db, [migration(1, text)])
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT id FROM elsewhere.here").fetchall() == [(1,)]


def test_error_position_inside_a_multiline_statement_of_a_transaction(fresh_db, send):
    db = fresh_db(None)
    text = "BEGIN;\nCREATE TABLE gone (id int);\nSELECT\n  1,\n  no_such_column;\nCOMMIT;\n"
    with pytest.raises(MigrationError) as err:
        runner.apply(db, [migration(1, text)])
    message = str(err.value)
    assert message.startswith('0001_step.sql:5: column "no_such_column" does not exist [SQLSTATE 42703]')
    assert "statement (line 3):\n    SELECT\n      1,\n      no_such_column\n" in message
    assert relations(db) == set()


def test_a_commit_that_fails_rolls_the_file_back_and_says_so(fresh_db, send):
    db = fresh_db(None)
    text = (
        "BEGIN;\nCREATE TABLE d (\n    id int PRIMARY KEY,\n"
        "    parent int REFERENCES d DEFERRABLE INITIALLY DEFERRED\n);\n"
        "INSERT INTO d VALUES (1, 2);\nCOMMIT;\n"
    )
    with pytest.raises(MigrationError) as err:
        runner.apply(
            db, [migration(1, "CREATE TABLE kept (id int);\n", "kept"), migration(2, text, "deferred")]
        )
    message = str(err.value)
    assert message.startswith('0002_deferred.sql:7: insert or update on table "d" violates foreign key')
    assert "[SQLSTATE 23503]" in message and "statement (line 7):\n    COMMIT" in message
    assert "the file's transaction was rolled back and the files before it stay applied" in message
    assert relations(db) == {"kept"}


def test_notices_are_collected_per_file(fresh_db, send):
    db = fresh_db(None)
    files = [
        migration(
            1, "BEGIN;\nDO $$BEGIN RAISE NOTICE 'first: a'; RAISE NOTICE 'first: b'; END$$;\nCOMMIT;\n", "a"
        ),
        migration(2, "DO $$BEGIN RAISE NOTICE 'second'; END$$;\n", "b"),
        migration(3, "BEGIN;\nCREATE TABLE IF NOT EXISTS quiet (id int);\nCOMMIT;\n", "c"),
    ]
    result = runner.apply(db, files)
    assert [f.notices for f in result.files] == [("first: a", "first: b"), ("second",), ()]


def test_settings_set_inside_a_transaction_do_not_leak_into_the_next_file(fresh_db, send):
    db = fresh_db(None)
    files = [
        migration(
            1,
            "BEGIN;\nCREATE SCHEMA IF NOT EXISTS elsewhere;\nSET search_path = elsewhere;\nCOMMIT;\n",
            "set",
        ),
        migration(2, "BEGIN;\nCREATE TABLE where_am_i (id int);\nCOMMIT;\n", "create"),
    ]
    runner.apply(db, files)
    assert relations(db) == {"where_am_i"}  # public, as with one psql -f per file


def _terminate_when_sleeping(conninfo: str, stop: threading.Event) -> None:
    """Terminate the session of ``conninfo``'s database once it sleeps in pg_sleep (up to 60 s)."""
    dbname = psycopg.conninfo.conninfo_to_dict(conninfo)["dbname"]
    deadline = time.monotonic() + 60
    with psycopg.connect(conninfo, autocommit=True) as conn:
        while not stop.is_set() and time.monotonic() < deadline:
            row = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND wait_event = 'PgSleep'",
                [dbname],
            ).fetchone()
            if row:
                return
            time.sleep(0.02)


def test_a_connection_terminated_mid_file_names_the_statement_it_was_running(fresh_db, send):
    db = fresh_db(None)
    text = "BEGIN;\nCREATE TABLE never_committed (id int);\nSELECT\n    pg_sleep(60);\nCOMMIT;\n"
    stop = threading.Event()
    killer = threading.Thread(target=_terminate_when_sleeping, args=(db, stop))
    killer.start()
    try:
        with pytest.raises(MigrationError) as err:
            runner.apply(
                db, [migration(1, "CREATE TABLE kept (id int);\n", "kept"), migration(2, text, "slow")]
            )
    finally:
        stop.set()
        killer.join(timeout=90)
    message = str(err.value)
    assert message.startswith(
        "0002_slow.sql:3: the connection to the server was lost while applying this statement"
    )
    assert "terminating connection due to administrator command" in message
    assert "0002_slow.sql's open transaction was rolled back by the server" in message
    assert relations(db) == {"kept"}


@pytest.mark.parametrize(
    ("text", "line", "state"),
    [
        (
            "BEGIN;\nCREATE TABLE c (id int);\nCOPY c FROM STDIN;\nCOMMIT;\n",
            3,
            "the file's transaction was rolled back",
        ),
        ("BEGIN;\nCOPY (SELECT 1) TO STDOUT;\nCOMMIT;\n", 2, "the file's transaction was rolled back"),
        ("CREATE TABLE c (id int);\nCOPY c TO STDOUT;\n", 2, "0002_copy.sql has no transaction of its own"),
    ],
    ids=["FROM STDIN in a transaction", "TO STDOUT in a transaction", "TO STDOUT, no transaction"],
)
def test_copy_to_or_from_the_client_is_refused_naming_the_statement(fresh_db, send, text, line, state):
    db = fresh_db(None)
    with pytest.raises(MigrationError) as err:
        runner.apply(db, [migration(1, "CREATE TABLE kept (id int);\n", "kept"), migration(2, text, "copy")])
    message = str(err.value)
    assert message.startswith(
        f"0002_copy.sql:{line}: COPY to or from the client (STDIN, STDOUT) is not supported"
    )
    assert state in message
    assert relations(db) == ({"kept", "c"} if "no transaction" in state else {"kept"})


def test_a_large_transaction_with_large_results_does_not_stall_the_pipeline(fresh_db):
    """The whole file is written before any result is read: with the socket buffers full both
    ways (megabytes of statements out, megabytes of rows back) neither side may wait forever."""
    db = fresh_db(None)
    literal = "x" * 1_000_000
    text = "BEGIN;\nSELECT repeat('y', 4000000);\n" + f"SELECT length('{literal}');\n" * 3 + "COMMIT;\n"
    outcome: list = []
    worker = threading.Thread(
        target=lambda: outcome.append(runner.apply(db, [migration(1, text)])), daemon=True
    )
    worker.start()
    worker.join(timeout=120)
    assert not worker.is_alive(), "the pipeline stalled"
    assert [f.statements for f in outcome[0].files] == [6]
