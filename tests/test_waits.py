"""Waits on the server, made visible and bounded, and an interrupted apply that leaves nothing
running on the server (issue 17, section 3), in-process against the session's server.

A statement blocked by another session's lock is reported with the blocking pid, its query and
since when, and given up past ``--lock-timeout``; a statement that is slow but blocked by nobody
(``pg_sleep``) is reported as such and given up past ``--statement-timeout``; the apply lock is
a lock like the others. Each failure names the file and line, and the server is checked
afterwards: the statement is no longer running, the file's transaction left nothing, the apply
lock is free. Every wait here is bounded by the limit under test, and every thread the test
starts is joined with a timeout; nothing asserts how long anything took.
"""

from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from session_checks import apply_lock_is_free

from leaddb import catalog, cli, runner, waits
from leaddb.errors import MigrationError, Stopped, WaitTimeout
from leaddb.migrations import Migration

WAIT = 60  # seconds: the bound of every join and poll
FAST = {"report_after": 0.3}  # report early: the tests look for the line, not for a duration


def migration(number: int, text: str, name: str = "step") -> Migration:
    return Migration(Path(f"{number:04d}_{name}.sql"), number, text)


@pytest.fixture(params=["one round trip", "statement by statement"])
def send(request, monkeypatch):
    """How single-transaction files are sent: pipelined, or one statement at a time (libpq < 14)."""
    if request.param == "statement by statement":
        monkeypatch.setattr(psycopg.Pipeline, "is_supported", classmethod(lambda cls: False))
    return request.param


@pytest.fixture
def lines(monkeypatch):
    """What the watcher says, line by line."""
    said: list[str] = []
    monkeypatch.setattr("leaddb.console.say", said.append)
    return said


@contextmanager
def holding(conninfo: str, sql: str, *, application: str = "blocker (test)"):
    """Another client, in an open transaction that ran ``sql`` (a lock it keeps until the end)."""
    with psycopg.connect(conninfo, application_name=application) as conn:
        conn.execute(sql)
        yield conn.info.backend_pid
        conn.rollback()


def sessions_of_the_runner(conninfo: str) -> list[tuple]:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        return conn.execute(
            "SELECT pid, state, query FROM pg_stat_activity WHERE application_name = %s",
            (runner.APPLICATION,),
        ).fetchall()


def none_left(conninfo: str, application: str = runner.APPLICATION) -> bool:
    """No session called ``application`` on the server, once a closed one has finished exiting
    (closing a connection ends an idle session, a moment later): polled, a bounded while."""
    deadline = datetime.now(UTC) + timedelta(seconds=WAIT)
    while datetime.now(UTC) < deadline:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            if not conn.execute(
                "SELECT 1 FROM pg_stat_activity WHERE application_name = %s", (application,)
            ).fetchall():
                return True
        threading.Event().wait(0.05)
    return False


def tables(conninfo: str) -> set[str]:
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute("SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace")
        return {r[0] for r in rows if r[0] != "locked_pkey"}


def in_thread(function):
    """Run ``function`` in a thread; (join, outcome): join(timeout) then outcome["error"/"value"]."""
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = function()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


# -- blocked by another session --------------------------------------------------------------------


def test_a_blocked_statement_is_reported_then_given_up_naming_the_blocker(fresh_db, send, lines):
    db = fresh_db(None)
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("CREATE TABLE locked (id int PRIMARY KEY)")
    text = "BEGIN;\nCREATE TABLE made_first (id int);\nALTER TABLE locked\n    ADD COLUMN c int;\nCOMMIT;\n"
    with holding(db, "LOCK TABLE locked IN ACCESS EXCLUSIVE MODE") as blocker:
        with waits.limits(waits.Limits(lock=1.5, **FAST)):
            with pytest.raises(WaitTimeout) as failure:
                runner.apply(db, [migration(1, text)])
        assert none_left(db)  # nothing of the apply runs on, while the blocker stays
    message = str(failure.value)
    assert message.startswith("0001_step.sql:3: gave up after waiting "), message
    assert "(limit 1.5 s (--lock-timeout)) for AccessExclusiveLock on relation locked" in message
    assert f"held by pid {blocker} (role " in message and "application 'blocker (test)'" in message
    assert "; idle in transaction since " in message
    assert "last query: LOCK TABLE locked IN ACCESS EXCLUSIVE MODE)" in message
    assert (
        "the statement was cancelled\n  statement:\n    ALTER TABLE locked\n        ADD COLUMN c int"
        in message
    )
    assert (
        f"next step: end that session or let it finish (SELECT pg_terminate_backend({blocker}) ends it)"
        in (message)
    )
    assert "raise the limit (--lock-timeout; 0: no limit)" in message
    assert "the file's transaction was rolled back and the files before it stay applied" in message
    # while it waited, one line said what on: the same words the failure uses
    waiting = [line for line in lines if line.startswith("waiting: 0001_step.sql:3 waits for ")]
    assert waiting, lines
    assert f"held by pid {blocker} (role " in waiting[0]
    assert "; waited " in waiting[0] and waiting[0].endswith("limit 1.5 s (--lock-timeout)")
    # the server: the file's transaction left nothing, the apply lock is free
    assert tables(db) == {"locked"}
    assert apply_lock_is_free(db)


def test_a_statement_waits_as_long_as_it_takes_without_a_limit_and_says_so(fresh_db, lines):
    """--lock-timeout 0: no limit; the wait is reported, and the apply completes once the
    blocker lets go (the test lets go once it has seen the line)."""
    db = fresh_db(None)
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("CREATE TABLE locked (id int PRIMARY KEY)")
    text = "BEGIN;\nALTER TABLE locked ADD COLUMN c int;\nCOMMIT;\n"
    with psycopg.connect(db, application_name="blocker (test)") as blocker:
        blocker.execute("LOCK TABLE locked IN ACCESS EXCLUSIVE MODE")
        with waits.limits(waits.Limits(lock=0, **FAST)) as limits:
            thread, outcome = in_thread(lambda: waits_applying(db, text, limits))
            seen = wait_for(lambda: any(line.startswith("waiting: ") for line in lines), thread)
        blocker.rollback()
    thread.join(WAIT)
    assert not thread.is_alive()
    assert seen, lines
    assert "error" not in outcome, outcome.get("error")
    assert "no limit (--lock-timeout)" in next(line for line in lines if line.startswith("waiting: "))


def waits_applying(db: str, text: str, limits: waits.Limits):
    with waits.limits(limits):  # the thread's own context
        return runner.apply(db, [migration(1, text)])


def wait_for(condition, thread: threading.Thread) -> bool:
    deadline = datetime.now(UTC) + timedelta(seconds=WAIT)
    while not condition():
        if not thread.is_alive() or datetime.now(UTC) > deadline:
            return False
        threading.Event().wait(0.05)
    return True


def test_waiting_for_the_apply_lock_names_the_apply_that_holds_it(fresh_db, lines):
    """The apply lock is waited for like any lock: a session left behind by an interrupted apply
    (here: a client holding the advisory lock) is named, and the wait is bounded."""
    db = fresh_db(None)
    with psycopg.connect(db, autocommit=True, application_name="leaddb apply (client pid 1)") as holder:
        holder.execute(runner.LOCK)
        with waits.limits(waits.Limits(lock=1, **FAST)):
            with pytest.raises(WaitTimeout) as failure:
                runner.apply(db, [migration(1, "CREATE TABLE never (id int);\n")])
        pid = holder.info.backend_pid
    message = str(failure.value)
    assert message.startswith("this apply: gave up after waiting "), message
    assert f"for {runner.APPLY_LOCK}, held by pid {pid} (role " in message
    assert "application 'leaddb apply (client pid 1)'; idle since " in message
    assert f"last query: {runner.LOCK})" in message
    assert message.endswith("; nothing was applied")
    assert tables(db) == set()
    assert apply_lock_is_free(db)  # the holder is gone: so is its lock


def test_a_limit_the_watcher_could_not_enforce_the_server_enforces(fresh_db, monkeypatch):
    """No second session for the watcher (a full server): the server's own lock_timeout, set as
    the session's default a margin past the limit, still ends the wait, naming file and line."""
    monkeypatch.setattr(waits.Watcher, "_connect", lambda self: setattr(self, "_unavailable", True))
    db = fresh_db(None)
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("CREATE TABLE locked (id int PRIMARY KEY)")
    with holding(db, "LOCK TABLE locked IN ACCESS EXCLUSIVE MODE"):
        with waits.limits(waits.Limits(lock=0.1, **FAST)):
            with pytest.raises(MigrationError) as failure:
                runner.apply(db, [migration(1, "BEGIN;\nALTER TABLE locked ADD COLUMN c int;\nCOMMIT;\n")])
    message = str(failure.value)
    assert message.startswith("0001_step.sql:2: canceling statement due to lock timeout [SQLSTATE 55P03]")
    assert tables(db) == {"locked"}


def test_a_catalog_read_blocked_by_a_locked_table_is_reported_and_bounded_too(fresh_db, lines):
    """Reading a column's default (pg_get_expr) waits for a table another session holds
    exclusively: introspect, drift, status and reapply read so, and say so, within the limit."""
    db = fresh_db()
    with holding(db, "LOCK TABLE leads IN ACCESS EXCLUSIVE MODE") as blocker:
        with waits.limits(waits.Limits(lock=1.5, **FAST)):
            with pytest.raises(WaitTimeout) as failure:
                catalog.snapshot_of(db)
        assert none_left(db, waits.READER)
    message = str(failure.value)
    assert message.startswith("reading the schema from the catalog: gave up after waiting "), message
    assert f"for AccessShareLock on relation leads, held by pid {blocker} (role " in message
    assert message.endswith("0: no limit), then run the task again; nothing was changed")
    assert any(line.startswith("waiting: reading the schema from the catalog waits for ") for line in lines)


# -- slow, blocked by nobody -----------------------------------------------------------------------


def test_a_slow_statement_blocked_by_nobody_is_told_apart_and_given_up(fresh_db, send, lines):
    db = fresh_db(None)
    text = "BEGIN;\nCREATE TABLE made_first (id int);\nSELECT pg_sleep(600);\nCOMMIT;\n"
    with waits.limits(waits.Limits(statement=1.5, **FAST)):
        with pytest.raises(WaitTimeout) as failure:
            runner.apply(db, [migration(1, text)])
    message = str(failure.value)
    assert message.startswith("0001_step.sql:3: ran "), message
    assert (
        "(limit 1.5 s (--statement-timeout)), not waiting for another session "
        "(server: active, wait event Timeout:PgSleep); the statement was cancelled"
    ) in message
    assert "next step: make the statement faster, or raise the limit (--statement-timeout; 0: no limit)" in (
        message
    )
    running = [line for line in lines if line.startswith("still running: 0001_step.sql:3 for ")]
    assert running, lines
    assert running[0].endswith(
        "not waiting for another session (server: active, wait event Timeout:PgSleep); "
        "limit 1.5 s (--statement-timeout)"
    )
    assert not [line for line in lines if line.startswith("waiting: ")]
    assert none_left(db)  # the sleep is not running on
    assert tables(db) == set()
    assert apply_lock_is_free(db)


def test_a_statement_that_finishes_by_itself_is_reported_and_not_cancelled(fresh_db, lines):
    db = fresh_db(None)
    text = "CREATE TABLE t (id int);\nSELECT pg_sleep(1);\n"
    with waits.limits(waits.Limits(statement=60, **FAST)):
        runner.apply(db, [migration(1, text)])
    assert any(line.startswith("still running: 0001_step.sql:2 for ") for line in lines), lines
    assert tables(db) == {"t"}


def test_a_quick_apply_opens_no_second_session(fresh_db, monkeypatch):
    """The watcher looks only at statements that run long: a quick apply costs no connection."""
    looked = []
    monkeypatch.setattr(waits.Watcher, "_look", lambda self: looked.append(1))
    db = fresh_db(None)
    runner.apply(db, [migration(1, "BEGIN;\nCREATE TABLE t (id int);\nCOMMIT;\n")])
    assert looked == []


# -- interrupted -----------------------------------------------------------------------------------


@pytest.mark.posix_only("sends itself SIGTERM and SIGHUP")
@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP", "SIGINT"])
def test_an_interrupted_apply_leaves_no_session_running_on_the_server(fresh_db, name):
    """SIGTERM, SIGHUP and Ctrl-C while a statement waits on the server: the statement is cancelled
    and the session ended before the exception leaves the runner (closing the connection alone
    would leave the server waiting for the lock, holding the apply lock)."""
    db = fresh_db(None)
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("CREATE TABLE locked (id int PRIMARY KEY)")
    text = "BEGIN;\nCREATE TABLE made_first (id int);\nALTER TABLE locked ADD COLUMN c int;\nCOMMIT;\n"
    number = getattr(signal, name)
    with holding(db, "LOCK TABLE locked IN ACCESS EXCLUSIVE MODE"):

        def signal_once_it_waits():
            deadline = datetime.now(UTC) + timedelta(seconds=WAIT)
            while datetime.now(UTC) < deadline:
                if any(state == "active" for _, state, _ in sessions_of_the_runner(db)):
                    if any("ALTER TABLE" in query for *_, query in sessions_of_the_runner(db)):
                        os.kill(os.getpid(), number)
                        return
                threading.Event().wait(0.05)

        sender = threading.Thread(target=signal_once_it_waits, daemon=True)
        with waits.limits(waits.Limits(lock=WAIT, **FAST)), cli.stop_signals():
            sender.start()
            with pytest.raises(KeyboardInterrupt) as stopped:
                runner.apply(db, [migration(1, text)])
        sender.join(WAIT)
        assert sessions_of_the_runner(db) == []  # gone at once: not left waiting for the lock
    if name != "SIGINT":
        assert isinstance(stopped.value, Stopped) and stopped.value.signal_name == name
        assert stopped.value.exit_code == 128 + number
    notes = " ".join(stopped.value.__notes__)
    assert "the apply's session on the server (pid " in notes
    assert (
        "was ended: 0001_step.sql was cancelled and its transaction rolled back; the apply lock is free"
        in (notes)
    )
    assert tables(db) == {"locked"}
    assert apply_lock_is_free(db)


def test_closing_a_session_mid_statement_leaves_it_waiting_and_end_session_ends_it(fresh_db):
    """Why the runner ends its session from another one: a server process waiting for a lock does
    not read the socket, so a closed client leaves it waiting (and holding what it holds)."""
    db = fresh_db(None)
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("CREATE TABLE locked (id int PRIMARY KEY)")
    with holding(db, "LOCK TABLE locked IN ACCESS EXCLUSIVE MODE"):
        waiting = []
        for _ in range(2):
            session = psycopg.connect(db, autocommit=True, application_name=runner.APPLICATION)
            session.pgconn.send_query(b"ALTER TABLE locked ADD COLUMN c int")  # the server waits
            waiting.append(session)
        assert wait_for(
            lambda: [s for s in sessions_of_the_runner(db) if s[1] == "active"][1:], threading.main_thread()
        )
        closed, ended = waiting
        closed_pid, ended_pid = closed.info.backend_pid, ended.info.backend_pid
        closed.close()
        note = runner.end_session(ended, db, ended_pid, "the statement")
        left = [pid for pid, *_ in sessions_of_the_runner(db)]
        assert closed_pid in left  # closed, and still waiting on the server
        assert ended_pid not in left
        assert note.endswith(
            "was ended: the statement was cancelled and its transaction rolled back; the apply lock is free"
        )
        waits.terminate(db, runner.APPLICATION)  # the test's own leftover


# -- the pieces --------------------------------------------------------------------------------------


def test_the_server_holds_the_session_to_the_limits_a_margin_later():
    assert waits.Limits(lock=120, statement=0).server_options() == "-c lock_timeout=150000"
    assert waits.Limits(lock=2, statement=30).server_options() == (
        "-c lock_timeout=7000 -c statement_timeout=37500"
    )
    assert waits.Limits(lock=0, statement=0).server_options() == ""


def test_the_limits_go_between_the_dsns_options_and_the_pinned_settings(monkeypatch):
    """A keyword ``options`` would replace the DSN's own and the pinned settings: the runner
    merges the limits in, in this order, so the pinned settings win and the DSN's stay."""
    from psycopg.conninfo import conninfo_to_dict

    from leaddb import runner

    monkeypatch.delenv("PGOPTIONS", raising=False)
    given = "dbname=x options='-c work_mem=8MB'"
    options = conninfo_to_dict(runner.session_conninfo(given, "-c lock_timeout=5000"))["options"]
    assert options == f"-c work_mem=8MB -c lock_timeout=5000 {runner.SESSION_OPTIONS}"
    options = conninfo_to_dict(runner.session_conninfo("dbname=x", ""))["options"]
    assert options == runner.SESSION_OPTIONS
    environment = runner.session_environment("-c lock_timeout=5000")
    assert environment["PGOPTIONS"] == f"-c lock_timeout=5000 {runner.SESSION_OPTIONS}"


def test_a_lock_is_named_in_words():
    named = {runner.ADVISORY_LOCK_KEY: runner.APPLY_LOCK}
    key = runner.ADVISORY_LOCK_KEY
    advisory = ("advisory", "ExclusiveLock", None, key >> 32, key & 0xFFFFFFFF, 1, None)
    assert waits.describe_lock(advisory, named) == runner.APPLY_LOCK
    assert waits.describe_lock(("advisory", "ShareLock", None, 0, 7, 1, None), named) == "advisory lock 7"
    relation = ("relation", "AccessExclusiveLock", "public.leads", None, None, None, None)
    assert waits.describe_lock(relation, named) == "AccessExclusiveLock on relation public.leads"
    row = ("transactionid", "ShareLock", None, None, None, None, "734")
    assert waits.describe_lock(row, named).startswith("ShareLock on transaction 734 (a row")


def test_the_psql_path_finds_the_file_and_line_of_a_query_the_server_shows():
    locate = waits.locator([("a.sql:4", "CREATE INDEX x\n  ON t (id)"), ("a.sql:9", "SELECT 1")])
    assert locate("-- the comment psql sent along\nCREATE INDEX x ON t (id);") == "a.sql:4"
    assert locate("SELECT 1") == "a.sql:9"
    assert locate("SELECT 2") is None


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0.25, "0.2 s"),
        (9.96, "10.0 s"),
        (41, "41 s"),
        (120, "2 min"),
        (125, "2 min 5 s"),
        (7300, "2 h 1 min"),
    ],
)
def test_durations_read_as_people_say_them(seconds, shown):
    assert waits.duration(seconds) == shown


def test_a_query_is_one_line_and_trimmed():
    assert waits.one_line("SELECT\n   1,\n\t2") == "SELECT 1, 2"
    long = waits.one_line("x" * 500)
    assert len(long) == waits.QUERY_CHARS and long.endswith("…")
