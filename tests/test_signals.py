"""SIGTERM, SIGHUP and Ctrl-C stop a task as a user's process manager, terminal or CI runner
sends them, end to end (issue 17, section 3): ``python -m invoke`` and ``python -m nox -s
verify`` as subprocesses, signalled while a statement waits on the server.

What must hold afterwards is read off the server and the process table, never off a clock: the
task said what it left and exited with the documented code (130, 143, 129), its server session
is gone (closing a connection leaves a server process waiting for a lock where it was), the apply
lock and the task lock are free, and no process of it lives on. Every wait is bounded.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from session_checks import apply_lock_is_free
from workspace import in_process, load_tasks

from leaddb import locks
from leaddb.backends.local import scratch_root

PROJECT_DIR = Path(__file__).resolve().parent.parent
WAIT = 120  # seconds: the bound of every wait for output, an exit, a process to go
CODES = {"SIGTERM": 143, "SIGHUP": 129, "SIGINT": 130}

pytestmark = pytest.mark.posix_only("sends SIGTERM and SIGHUP, which Windows has not")


class Running:
    """A subprocess whose output lines are collected as they come (PYTHONUNBUFFERED)."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            argv,
            cwd=cwd,
            env={**env, "PYTHONUNBUFFERED": "1"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own group: a signal to the test's group does not reach it
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.process.stderr, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream, into: list[str]) -> None:
        for line in stream:
            into.append(line)

    def wait_for(self, fragment: str) -> str:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            for line in list(self.out) + list(self.err):
                if fragment in line:
                    return line
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"no line with {fragment!r}:\n{''.join(self.out)}\n{''.join(self.err)}")

    def finish(self) -> tuple[int, str, str]:
        code = self.process.wait(timeout=WAIT)
        for reader in self._readers:
            reader.join(WAIT)
        return code, "".join(self.out), "".join(self.err)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=WAIT)


def copy_project(destination: Path, *, everything: bool = False) -> Path:
    """The project as a user has it: what the tasks read, or (``everything``) every file git
    tracks, for nox to install from."""
    if everything:
        listed = subprocess.run(
            ["git", "ls-files", "-z"], cwd=PROJECT_DIR, capture_output=True, check=True, timeout=60
        ).stdout.split(b"\0")
        names = [name.decode() for name in listed if name]
    else:
        names = ["tasks.py", "docker-compose.yml", "Technical-Architecture-Specification.md", "README.md"]
        for folder in ("api", "docs"):
            names += [
                p.relative_to(PROJECT_DIR).as_posix()
                for p in (PROJECT_DIR / folder).rglob("*")
                if p.is_file()
            ]
    for name in names:
        source = PROJECT_DIR / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    destination.chmod(0o755)
    return destination


def invoke_env(**extra: str) -> dict[str, str]:
    """The environment of a task the test runs: this checkout's leaddb (not an installed copy)."""
    path = os.pathsep.join(filter(None, [str(PROJECT_DIR), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **extra}


@contextmanager
def holding_leads(conninfo: str):
    """Another client holding an ACCESS EXCLUSIVE lock on ``leads`` in an open transaction: the
    apply of 0006_leads.sql waits on it (its CREATE INDEX IF NOT EXISTS locks the table first)."""
    with psycopg.connect(conninfo, application_name="holder (test)") as conn:
        conn.execute("LOCK TABLE leads IN ACCESS EXCLUSIVE MODE")
        yield conn.info.backend_pid
        conn.rollback()


def applies_on(conninfo: str) -> list[tuple]:
    """The sessions of any leaddb apply on the server (the runner names its sessions so)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        return conn.execute(
            "SELECT pid, state, wait_event_type, query FROM pg_stat_activity "
            "WHERE application_name LIKE 'leaddb apply (client pid %%)'"
        ).fetchall()


def gone(pid: int) -> bool:
    """The process has exited and been reaped, or is a zombie (it runs nothing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def wait_gone(pid: int) -> bool:
    deadline = time.monotonic() + WAIT
    while not gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def workspace(tmp_path):
    return copy_project(tmp_path / "ws")


# -- one task, one signal ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP", "SIGINT"])
def test_a_signal_to_a_waiting_apply_ends_its_server_session_and_says_what_was_left(
    workspace, fresh_db, name
):
    """The issue's case: after SIGTERM the server session kept waiting and held the apply lock,
    and the next apply blocked silently. Here the apply waits on a table another client locked."""
    db = fresh_db()  # every migration applied: the apply runs them again, as a user re-applies
    argv = [sys.executable, "-m", "invoke", "db.apply", "--backend", "dsn", "--dsn", db]
    with holding_leads(db) as holder:
        task = Running(argv, workspace, invoke_env())
        try:
            line = task.wait_for("waiting: api/db/migrations/0006_leads.sql:")
            assert f"held by pid {holder} (role " in line and "application 'holder (test)'" in line
            (session,) = applies_on(db)  # the apply's own session, waiting for the lock
            assert session[2] == "Lock", session
            os.kill(task.process.pid, getattr(signal, name))
            code, out, err = task.finish()
        finally:
            task.stop()
        assert applies_on(db) == []  # ended before the task exited, the holder still holding
    assert code == CODES[name], err
    head = "interrupted:" if name == "SIGINT" else f"terminated ({name}):"
    assert err.startswith(f"{head} db.apply stopped; the file being applied was rolled back"), err
    assert (
        f"the apply's session on the server (pid {session[0]}) was ended: api/db/migrations/0006_leads.sql "
        "was cancelled and its transaction rolled back; the apply lock is free"
    ) in err
    assert "next step: `invoke db.apply` applies the rest" in err
    assert "Traceback" not in out + err
    assert apply_lock_is_free(db)
    # the next apply, in process (tests/workspace.py): what the signalled one left is on the server
    again = in_process(workspace, load_tasks(workspace), invoke_env(), *argv[3:])
    assert again.returncode == 0, again.stderr  # nothing left to wait for
    assert "waiting:" not in again.stdout


def test_a_lock_timeout_from_the_environment_fails_the_task_naming_the_holder(workspace, fresh_db):
    db = fresh_db()
    argv = [sys.executable, "-m", "invoke", "db.apply", "--backend", "dsn", "--dsn", db]
    with holding_leads(db) as holder:
        done = subprocess.run(
            argv,
            cwd=workspace,
            env=invoke_env(INVOKE_DB_LOCK_TIMEOUT="1s"),
            capture_output=True,
            text=True,
            timeout=WAIT,
        )
        deadline = time.monotonic() + WAIT  # its closed session exits a moment after the process
        while applies_on(db) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert applies_on(db) == []
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("api/db/migrations/0006_leads.sql:"), done.stderr
    assert ": gave up after waiting " in done.stderr
    assert "(limit 1.0 s (INVOKE_DB_LOCK_TIMEOUT (or db.lock_timeout in invoke.yaml))) for " in done.stderr
    assert f"held by pid {holder} (role " in done.stderr
    assert (
        "raise the limit (set INVOKE_DB_LOCK_TIMEOUT (or db.lock_timeout in invoke.yaml); 0: no limit)"
        in (done.stderr)
    )
    assert "the file's transaction was rolled back and the files before it stay applied" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert apply_lock_is_free(db)


@pytest.mark.needs_pg_binaries
def test_sigterm_to_a_local_apply_frees_the_task_lock_and_the_next_task_runs(tmp_path):
    """The local backend: its task lock (a file lock) is free when the task has gone, and its
    server session is ended first, so the next reset neither waits nor is refused."""
    root = copy_project(tmp_path / "ws")
    state = Path(tempfile.mkdtemp(prefix="leaddb-signals-", dir=scratch_root()))
    env = invoke_env(LEADDB_STATE_DIR=str(state), INVOKE_DB_BACKEND="local")
    invoke = [sys.executable, "-m", "invoke"]
    tasks = load_tasks(root)
    try:
        reset = in_process(root, tasks, env, "db.reset")  # the cluster to work on (tests/workspace.py)
        assert reset.returncode == 0, reset.stderr
        from leaddb.backends.local import LocalBackend

        conninfo = LocalBackend(root, state_dir=state).conninfo()
        with holding_leads(conninfo):
            task = Running([*invoke, "db.apply"], root, env)
            try:
                task.wait_for("waiting: api/db/migrations/0006_leads.sql:")
                os.kill(task.process.pid, signal.SIGTERM)
                code, out, err = task.finish()
            finally:
                task.stop()
            assert applies_on(conninfo) == []
        assert code == 143, err
        assert err.startswith("terminated (SIGTERM): db.apply stopped;"), err
        assert "the apply lock is free" in err
        with locks.hold(state / "reset.lock", "db.reset", "the test"):  # the task lock is free
            pass
        again = in_process(root, tasks, env, "db.reset")  # in process, as the clean-up
        assert again.returncode == 0, again.stderr
    finally:
        in_process(root, tasks, env, "db.down")  # a clean-up
        shutil.rmtree(state, ignore_errors=True)


# -- nox -s verify ---------------------------------------------------------------------------------


def nox_python() -> str | None:
    """A Python with nox, as a user runs it (`python -m nox`): the one this virtualenv was made
    from (CI installs nox into it), else ``nox``'s own."""
    candidates = [getattr(sys, "_base_executable", None), sys.executable]
    program = shutil.which("nox")
    if program:
        first = Path(program).read_text(encoding="utf-8", errors="replace").splitlines()[0]
        candidates.append(first.removeprefix("#!").strip() or None)
    for python in filter(None, candidates):
        found = subprocess.run([python, "-c", "import nox"], capture_output=True, timeout=60)
        if found.returncode == 0:
            return python
    return None


@pytest.mark.slow
@pytest.mark.needs_pg_binaries
def test_sigterm_to_nox_verify_stops_the_pipeline_and_leaves_the_lock_free(tmp_path):
    """The issue's case: `invoke db.verify` lived on under pid 1 after nox got SIGTERM, wrote
    reports/, and the next run was refused ("another db.bench … is running"). Here nox is sent
    SIGTERM (nox alone, as a process manager does) while verify's bench runs."""
    python = nox_python()
    if python is None:
        if os.environ.get("CI"):
            pytest.fail("no Python with nox found (CI installs it: python -m pip install 'nox[uv]')")
        pytest.skip("needs nox: python -m pip install 'nox[uv]'")
    root = copy_project(tmp_path / "ws", everything=True)
    state = Path(tempfile.mkdtemp(prefix="leaddb-nox-", dir=scratch_root()))
    env = {
        k: v
        for k, v in {**os.environ, "LEADDB_STATE_DIR": str(state), "PYTHONUNBUFFERED": "1"}.items()
        if not k.startswith(("INVOKE_", "NOX_", "VIRTUAL_ENV"))
    }
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if ".nox" not in p)
    lock = state / "reset.lock"
    nox = Running(
        [python, "-m", "nox", "-s", "verify", "--", "--backend", "local", "--bench-runs", "10000"], root, env
    )
    holder = None
    try:
        nox.wait_for("bench: 10000 fresh resets")
        holder = int(lock.read_text(encoding="utf-8").split()[0])  # the invoke process, as the lock says
        os.kill(nox.process.pid, signal.SIGTERM)
        code, out, err = nox.finish()
        assert wait_gone(holder), f"invoke db.verify (pid {holder}) lives on after nox ended"
        with locks.hold(lock, "db.bench", "the test"):  # free: the next run is not refused
            pass
    finally:
        nox.stop()
        if holder is not None and not gone(holder):  # the bug: it lives on; it is ours to end
            os.kill(holder, signal.SIGKILL)
            wait_gone(holder)
        subprocess.run(
            [sys.executable, "-m", "invoke", "db.down", "--backend", "local"],
            cwd=root,
            env=invoke_env(LEADDB_STATE_DIR=str(state)),
            capture_output=True,
            timeout=WAIT,
        )
        shutil.rmtree(state, ignore_errors=True)
    text = out + err
    assert code == 130, text  # nox's own code for an interrupted session
    assert "terminated (SIGTERM): db.verify stopped; the local cluster may be half-created" in text, text
    assert "verify stopped in its bench step, which reports/verify.json and reports/verify.junit.xml" in text
    assert "Traceback" not in text
    report = (root / "reports" / "verify.json").read_text(encoding="utf-8")
    assert '"name": "bench"' in report and '"message": "stopped by SIGTERM"' in report
