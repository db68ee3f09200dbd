"""The local cluster's lifecycle without pg_ctl (POSIX): the data directory copied in one walk
(``platforms.copy_tree``), the postmaster started directly and waited for on its own pid file,
stopped by its signal, and its log opened only when it is a file of its own. No server: a
stand-in process plays the postmaster."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from leaddb import platforms
from leaddb.backends import cluster as cluster_module
from leaddb.backends.cluster import Cluster
from leaddb.errors import BackendError

# a stand-in postmaster: says it is ready, then reports the first stop signal it gets
REPORTER = """
import signal, sys, time
got = []
for name in ("SIGINT", "SIGQUIT", "SIGTERM"):
    signal.signal(getattr(signal, name), lambda number, frame: got.append(signal.Signals(number).name))
print("ready", flush=True)
deadline = time.monotonic() + 30
while not got and time.monotonic() < deadline:
    time.sleep(0.01)
print(got[0] if got else "none", flush=True)
"""


def _tree(root: Path) -> dict[str, tuple]:
    """Every entry under ``root``: its kind, mode bits and content (or a link's target)."""
    found = {}
    for path in sorted(root.rglob("*")):
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            found[str(path.relative_to(root))] = ("link", os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            found[str(path.relative_to(root))] = ("dir", stat.S_IMODE(st.st_mode))
        else:
            found[str(path.relative_to(root))] = ("file", stat.S_IMODE(st.st_mode), path.read_bytes())
    return found


@pytest.fixture
def source(tmp_path):
    top = tmp_path / "pristine"
    (top / "base" / "1").mkdir(parents=True)
    (top / "global").mkdir(mode=0o750)
    (top / "PG_VERSION").write_text("15\n", encoding="utf-8", newline="\n")
    (top / "empty").write_bytes(b"")
    (top / "base" / "1" / "1259").write_bytes(os.urandom(300_000))  # several sendfile calls' worth
    (top / "global" / "pg_control").write_bytes(b"\0" * 8192)
    (top / "global" / "pg_control").chmod(0o640)
    (top / "script").write_text("#!/bin/sh\n", encoding="utf-8", newline="\n")
    (top / "script").chmod(0o755)
    outside = tmp_path / "outside.txt"
    outside.write_text("not to be copied\n", encoding="utf-8", newline="\n")
    (top / "pg_wal").symlink_to(outside)  # a link stays a link, never followed
    top.chmod(0o700)
    return top


POSIX_AND_WINDOWS = pytest.mark.parametrize(
    "windows",
    [pytest.param(False, marks=pytest.mark.posix_only("O_NOFOLLOW, sendfile, fchown")), True],
    ids=["posix", "windows"],
)


@POSIX_AND_WINDOWS
def test_the_copy_is_the_tree_its_modes_and_its_links(source, tmp_path, windows):
    target = tmp_path / "staging" / "data"
    target.parent.mkdir()
    platforms.copy_tree(source, target, None, windows=windows)
    assert _tree(target) == _tree(source)
    assert stat.S_IMODE(os.lstat(target).st_mode) == 0o700
    assert os.path.islink(target / "pg_wal")


@pytest.mark.posix_only("ownership: chown as root")
@pytest.mark.skipif(not platforms.running_as_root(), reason="giving files away needs root")
def test_as_root_every_entry_of_the_copy_is_the_owner_s_as_it_is_made(source, tmp_path):
    ids = platforms.user_ids("postgres") or (65534, 65534)
    target = tmp_path / "data"
    platforms.copy_tree(source, target, ids)
    owners = {(os.lstat(p).st_uid, os.lstat(p).st_gid) for p in [target, *target.rglob("*")]}
    assert owners == {ids}
    assert os.lstat(source / "base" / "1" / "1259").st_uid == 0  # the source is left as it was
    assert os.stat(tmp_path / "outside.txt").st_uid == 0  # a link's target is never given away


@pytest.mark.posix_only("a FIFO: os.mkfifo")
def test_a_fifo_in_the_source_is_refused_and_never_opened(source, tmp_path):
    os.mkfifo(source / "base" / "pipe")
    with pytest.raises(OSError, match="neither a file, a directory nor a link"):
        platforms.copy_tree(source, tmp_path / "data")


@POSIX_AND_WINDOWS
def test_a_failed_copy_stops_at_its_first_failure_with_that_error(source, tmp_path, monkeypatch, windows):
    calls = []
    real_open = os.open

    def failing_open(path, flags, *args, **kwargs):
        if flags & os.O_CREAT:
            calls.append(path)
            raise OSError(28, "No space left on device", str(path))
        return real_open(path, flags, *args, **kwargs)

    def failing_copy(src, dst, *args, **kwargs):
        calls.append(dst)
        raise OSError(28, "No space left on device", str(dst))

    if windows:
        monkeypatch.setattr(platforms.shutil, "copy", failing_copy)
    else:
        monkeypatch.setattr(platforms.os, "open", failing_open)
    with pytest.raises(OSError) as failed:
        platforms.copy_tree(source, tmp_path / "data", windows=windows)
    assert failed.value.errno == 28 and len(calls) == 1


# -- the server log ---------------------------------------------------------------------------


@pytest.fixture
def cluster(tmp_path):
    made = Cluster(tmp_path / "cluster")
    made.data.mkdir(parents=True)
    return made


def test_the_log_is_opened_for_appending_and_made_when_missing(cluster):
    fd = cluster._open_log()
    try:
        os.write(fd, b"first\n")
    finally:
        os.close(fd)
    fd = cluster._open_log()
    try:
        os.write(fd, b"second\n")
    finally:
        os.close(fd)
    assert cluster.log.read_bytes() == b"first\nsecond\n"


@pytest.mark.posix_only("the server log is opened by this tool only where it starts the postmaster")
@pytest.mark.parametrize("planted", ["symlink", "hard link", "fifo", "directory"])
def test_a_log_planted_as_something_else_is_refused_and_its_target_left_alone(cluster, tmp_path, planted):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    if planted == "symlink":
        cluster.log.symlink_to(victim)
    elif planted == "hard link":
        os.link(victim, cluster.log)
    elif planted == "fifo":
        os.mkfifo(cluster.log)
    else:
        cluster.log.mkdir()
    with pytest.raises(BackendError, match="is not a regular file of its own"):
        cluster._open_log()
    assert victim.read_bytes() == b"precious\n"


# -- start and stop, with a stand-in postmaster ------------------------------------------------


def _pid_file(cluster: Cluster, pid: int, status: str, started: float) -> None:
    lines = [str(pid), str(cluster.data), str(int(started)), "5432", "", "127.0.0.1", "0 0", status]
    tmp = cluster.data / "postmaster.pid.tmp"
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8", newline="\n")
    os.replace(tmp, cluster.data / "postmaster.pid")


@pytest.fixture
def stand_in(cluster, monkeypatch):
    """``_launch`` starts ``python -c SCRIPT`` instead of postgres; the fixture hands the test
    a way to set that script, and kills whatever it started."""
    started: list[subprocess.Popen] = []
    script = {"code": "import time; time.sleep(30)"}

    def start_detached(argv, log, user, cwd=None):
        process = subprocess.Popen(
            [sys.executable, "-c", script["code"]], stdin=subprocess.DEVNULL, stdout=log
        )
        started.append(process)
        return process

    monkeypatch.setattr(cluster_module, "find_binary", lambda name: Path(sys.executable))
    monkeypatch.setattr(platforms, "start_detached", start_detached)
    monkeypatch.setattr(platforms, "let_go", lambda process: None)
    yield script, started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()


@pytest.mark.posix_only("the postmaster is started directly on POSIX only")
def test_start_waits_for_its_own_postmaster_not_a_stale_ready_file(cluster, stand_in, monkeypatch):
    """A crashed server's postmaster.pid says "ready" with another pid, or with this pid but an
    old start time: neither is the new server."""
    script, started = stand_in
    seen = []
    real_sleep = time.sleep

    def sleep(seconds):  # the stand-in writes its pid file only after two stale forms were seen
        seen.append(cluster._postmaster_lock())
        process = started[0]
        if len(seen) == 1:
            _pid_file(cluster, os.getpid(), "ready", time.time())
        elif len(seen) == 2:
            _pid_file(cluster, process.pid, "ready", time.time() - 3600)
        elif len(seen) == 3:
            _pid_file(cluster, process.pid, "starting", time.time())
        elif len(seen) == 4:
            _pid_file(cluster, process.pid, "ready", time.time())
        real_sleep(min(seconds, 0.01))

    _pid_file(cluster, 999_999_999, "ready", time.time())
    monkeypatch.setattr(cluster_module.time, "sleep", sleep)
    cluster._launch(timeout=30)
    assert len(seen) == 4
    assert cluster._postmaster_lock()[:2] == (started[0].pid, "ready")


@pytest.mark.posix_only("the postmaster is started directly on POSIX only")
def test_a_postmaster_that_exits_during_start_up_is_a_failure_with_this_start_s_log(cluster, stand_in):
    script, _ = stand_in
    cluster.log.write_text("FATAL: an older start's line\n", encoding="utf-8", newline="\n")
    script["code"] = "import sys; print('FATAL:  this start failed', flush=True); sys.exit(1)"
    with pytest.raises(BackendError) as failed:
        cluster._launch(timeout=30)
    message = str(failed.value)
    assert "the local PostgreSQL server exited during start-up (exit 1)" in message
    assert "this start failed" in message and "an older start's line" not in message


@pytest.mark.posix_only("the postmaster is started directly on POSIX only")
def test_what_the_start_does_meanwhile_runs_once_after_the_launch(cluster, stand_in):
    script, started = stand_in
    done = []

    def meanwhile():
        done.append(len(started))
        _pid_file(cluster, started[0].pid, "ready", time.time())

    cluster._launch(timeout=30, meanwhile=meanwhile)
    assert done == [1]


@pytest.mark.posix_only("stop signals a process can handle: on Windows os.kill ends it outright")
@pytest.mark.parametrize(
    ("mode", "signal_name"), [("fast", "SIGINT"), ("immediate", "SIGQUIT"), ("smart", "SIGTERM")]
)
def test_each_stop_mode_sends_postgres_own_signal(mode, signal_name):
    reporter = subprocess.Popen([sys.executable, "-c", REPORTER], stdout=subprocess.PIPE, text=True)
    try:
        assert reporter.stdout.readline().strip() == "ready"
        platforms.stop_postmaster(reporter.pid, mode)
        assert reporter.stdout.readline().strip() == signal_name
    finally:
        reporter.kill()
        reporter.wait()


@pytest.mark.posix_only("signals and /proc: the stop of a POSIX postmaster")
def test_stop_waits_until_the_postmaster_has_removed_its_pid_file(cluster, monkeypatch):
    """The stand-in removes postmaster.pid a moment after the signal, as the postmaster does
    at the end of its shutdown: stop() returns only after that."""
    code = (
        "import os, signal, sys, time\n"
        "signal.signal(signal.SIGINT, lambda *a: (time.sleep(0.2), os.unlink(sys.argv[1]), os._exit(0)))\n"
        "print('ready', flush=True)\n"
        "time.sleep(30)\n"
    )
    pid_file = cluster.data / "postmaster.pid"
    server = subprocess.Popen(
        [sys.executable, "-c", code, str(pid_file)], cwd=cluster.data, stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout.readline().strip() == "ready"
        _pid_file(cluster, server.pid, "ready", time.time())
        assert cluster.stop("fast")
        assert not pid_file.exists()
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()


@pytest.mark.posix_only("the postmaster is started directly (and left to a reaper) on POSIX only; SIGKILL")
def test_a_detached_process_is_reaped_the_moment_it_ends_without_a_warning():
    """Left to itself, a started process still is this one's child: killed (as a test kills a
    postmaster, or the OOM killer does), it must not linger as a zombie holding its pid while
    this process lives on; and its handle, dropped, must not warn that it still runs."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        pid = server.pid
        reaper = platforms.let_go(server)
        del server
        os.kill(pid, signal.SIGKILL)
        reaper.join(timeout=30)
    assert not reaper.is_alive()
    with pytest.raises(ProcessLookupError):  # reaped: not even a zombie is left
        os.kill(pid, 0)


def test_the_old_tree_not_removed_while_the_new_server_starts_is_left_said_not_raised(monkeypatch, capsys):
    """The reset's old cluster is a tombstone by then: a failure to remove it must not fail (or
    leave unsaid) a reset whose new server is already starting; the next reset or down sweeps it."""
    from leaddb.backends import local

    def refused(path, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(platforms, "remove_tree", refused)
    local._remove_buried(Path("/state/.tomb-cluster-x"))
    assert "left for the next reset or db.down" in capsys.readouterr().out
    local._remove_buried(None)  # nothing buried: nothing to do
