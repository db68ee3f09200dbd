"""psql in the container, watched and stopped as the runner is (issue 17, section 3): a statement
blocked by another session's lock is reported and given up past the limit, naming the file and
line psql reported; a stopped task (SIGTERM to this process, as a process manager sends it) ends
psql's session on the server and psql itself, so nothing of the apply waits on in the container
or on the server. Checked on the server (pg_stat_activity) and in the container (its processes),
never on a clock; every wait is bounded."""

from __future__ import annotations

import os
import signal
import threading
import time

import psycopg
import pytest
from docker_support import GOOD_MIGRATIONS, write_migrations
from session_checks import apply_lock_is_free

from leaddb import cli, waits
from leaddb.errors import Stopped, WaitTimeout
from leaddb.migrations import discover

pytestmark = [pytest.mark.docker, pytest.mark.posix_only("sends itself SIGTERM")]

WAIT = 60
BLOCKED = "0003_widen.sql"


def blocked_project(project, conninfo: str):
    """The good migrations, and a third that alters ``gadgets``, a table of the test's own (on
    which it holds an ACCESS EXCLUSIVE lock): only that file waits."""
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
        conn.execute("CREATE TABLE gadgets (id int)")
    write_migrations(
        project / "api" / "db" / "migrations",
        {
            **GOOD_MIGRATIONS,
            BLOCKED: "BEGIN;\nALTER TABLE gadgets\n    ADD COLUMN IF NOT EXISTS colour text;\nCOMMIT;\n",
        },
    )
    return discover(project / "api" / "db" / "migrations")


def psql_sessions(conninfo: str) -> list[tuple]:
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
        return conn.execute(
            "SELECT pid, wait_event_type FROM pg_stat_activity WHERE application_name LIKE 'leaddb-psql-%'"
        ).fetchall()


def psql_in(container) -> list[str]:
    """The command lines of the psql processes running in the container."""
    code, output = container.exec_run(
        ["sh", "-c", 'for p in /proc/[0-9]*; do tr "\\0" " " < "$p/cmdline"; echo; done']
    )
    return [line for line in output.decode("utf-8", "replace").splitlines() if line.startswith("psql ")]


def test_a_blocked_psql_apply_is_given_up_and_a_stopped_one_ends_psql_and_its_session(
    make_backend, project, monkeypatch
):
    """Both on one container (each leaves it as it found it: no psql, no session, the apply lock
    free, the blocked file's change rolled back)."""
    said: list[str] = []
    monkeypatch.setattr("leaddb.console.say", said.append)
    backend = make_backend()
    backend.reset(discover(project / "api" / "db" / "migrations"))
    files = blocked_project(project, backend.conninfo())
    reported_and_given_up(backend, files, said)
    stopped_ends_psql_and_its_session(backend, files)


def reported_and_given_up(backend, files, said: list[str]) -> None:
    """Past the lock limit: reported while it waits, then given up, naming the file and line."""
    with psycopg.connect(backend.conninfo(), application_name="holder (test)") as holder:
        holder.execute("LOCK TABLE gadgets IN ACCESS EXCLUSIVE MODE")
        with waits.limits(waits.Limits(lock=2, report_after=0.3)), pytest.raises(WaitTimeout) as failure:
            backend.apply(files)
        deadline = time.monotonic() + WAIT  # psql's session ends as psql exits
        while psql_sessions(backend.conninfo()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert psql_sessions(backend.conninfo()) == []
        pid = holder.info.backend_pid
    message = str(failure.value)
    assert message.startswith(f"api/db/migrations/{BLOCKED}:2: gave up after waiting "), message
    assert f"for AccessExclusiveLock on relation gadgets, held by pid {pid} (role " in message
    assert "application 'holder (test)'; idle in transaction since " in message
    assert "the file's transaction was rolled back and the files before it stay applied" in message
    assert any(line.startswith(f"waiting: api/db/migrations/{BLOCKED}:2 waits for ") for line in said), said
    container = backend.client.containers.get(backend.container_name)
    assert psql_in(container) == []
    assert apply_lock_is_free(backend.conninfo())


def stopped_ends_psql_and_its_session(backend, files) -> None:
    """SIGTERM while psql waits in the container: psql's session is ended on the server (killing
    psql alone would leave it waiting for the lock, holding the apply lock), then psql."""
    conninfo = backend.conninfo()
    container = backend.client.containers.get(backend.container_name)
    with psycopg.connect(conninfo) as holder:
        holder.execute("LOCK TABLE gadgets IN ACCESS EXCLUSIVE MODE")

        def terminate_once_it_waits():
            deadline = time.monotonic() + WAIT
            while time.monotonic() < deadline:
                if any(event == "Lock" for _, event in psql_sessions(conninfo)):
                    os.kill(os.getpid(), signal.SIGTERM)
                    return
                time.sleep(0.05)

        sender = threading.Thread(target=terminate_once_it_waits, daemon=True)
        with waits.limits(waits.Limits(lock=WAIT)), cli.stop_signals():
            sender.start()
            with pytest.raises(Stopped) as stopped:
                backend.apply(files)
        sender.join(WAIT)
        assert psql_sessions(conninfo) == []  # ended and awaited before the task went on
        assert psql_in(container) == []
    notes = " ".join(stopped.value.__notes__)
    assert "psql's session on the server (pid " in notes
    assert "was ended: the statement in progress was cancelled and its transaction rolled back; " in notes
    assert f"the apply lock is free; psql in container {backend.container_name} was stopped" in notes
    assert apply_lock_is_free(conninfo)
    with psycopg.connect(conninfo, autocommit=True) as conn:  # the file's transaction left nothing
        assert conn.execute(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'gadgets'::regclass AND attname = 'colour'"
        ).fetchone() == (0,)
    backend.apply(files)  # nothing left to wait for
