"""The task lock: exclusive holders exclude everyone, shared holders only exclusive ones;
re-entrant in one process; refusals name the holder; never follows a planted link. Server-free:
the mutation session runs these against ``leaddb/locks.py``."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
import time

import pytest

from leaddb import locks, platforms
from leaddb.errors import BackendError

HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from leaddb import locks
    with locks.hold(Path(sys.argv[1]), sys.argv[2], "the target", shared=sys.argv[3] == "shared"):
        print("held", flush=True)
        sys.stdin.readline()
    """
)


@pytest.fixture
def holder(tmp_path):
    """Another process holding the lock (exclusive or shared) until the test ends."""
    started = []

    def hold(mode: str, task: str = "db.reset"):
        process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(tmp_path / "task.lock"), task, mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        started.append(process)
        assert process.stdout.readline().strip() == "held"
        return process

    yield hold
    for process in started:
        if process.returncode is None:  # not released by the test itself
            process.communicate("\n", timeout=30)


def test_an_exclusive_holder_refuses_every_other_task_naming_itself(tmp_path, holder):
    first = holder("exclusive", "db.reset")
    for shared in (False, True):
        with pytest.raises(BackendError) as refused:
            with locks.hold(tmp_path / "task.lock", "db.apply", "the target", shared=shared):
                pytest.fail("got a lock another process holds exclusively")
        message = str(refused.value)
        assert message.startswith(f"another db.reset of the target is running (pid {first.pid}; lock ")
        assert "next step: wait for it to finish; nothing was changed by this one" in message


def test_a_shared_holder_refuses_an_exclusive_one(tmp_path, holder):
    first = holder("shared", "db.apply")
    with pytest.raises(BackendError) as refused:
        with locks.hold(tmp_path / "task.lock", "db.reset", "the target"):
            pytest.fail("a reset got the lock while an apply holds it")
    assert str(refused.value).startswith(f"another db.apply of the target is running (pid {first.pid}; lock ")


def test_a_second_shared_holder_is_admitted_on_posix_and_refused_on_windows(tmp_path, holder):
    """flock has a shared mode: a second apply goes ahead (the server's advisory lock serialises
    the files). Windows' msvcrt.locking has none (leaddb/locks.py): the second apply is refused,
    naming the first, rather than queued."""
    first = holder("shared", "db.apply")
    if not platforms.IS_WINDOWS:
        with locks.hold(tmp_path / "task.lock", "db.reapply", "the target", shared=True):
            return
    with pytest.raises(BackendError) as refused:
        with locks.hold(tmp_path / "task.lock", "db.reapply", "the target", shared=True):
            pytest.fail("a second shared holder got the lock on Windows")
    assert str(refused.value).startswith(f"another db.apply of the target is running (pid {first.pid}; lock ")


def test_a_nested_hold_in_one_process_is_refused_and_the_outer_one_released_after(tmp_path, holder):
    """Nothing nests task locks: a second hold in the same process is refused as another's."""
    path = tmp_path / "task.lock"
    with locks.hold(path, "db.reset", "the target"):
        with pytest.raises(
            BackendError, match=f"another db.reset of the target is running \\(pid {os.getpid()};"
        ):
            with locks.hold(path, "db.bench", "the target"):
                pytest.fail("a nested hold was taken")
    holder("exclusive")  # released: another process gets it


@pytest.mark.posix_only("O_NOFOLLOW is POSIX (and symbolic links need a privilege on Windows)")
def test_a_planted_link_at_the_lock_path_is_never_followed(tmp_path):
    precious = tmp_path / "precious.txt"
    precious.write_text("not yours\n", encoding="utf-8", newline="\n")
    (tmp_path / "task.lock").symlink_to(precious)
    with pytest.raises(BackendError, match="cannot open the lock file .*task.lock") as refused:
        with locks.hold(tmp_path / "task.lock", "db.reset", "the target"):
            pytest.fail("followed the link")
    assert str(refused.value).endswith(
        "\n  next step: the lock file must be a regular file of yours, not a link; remove it and retry"
    )
    assert precious.read_text(encoding="utf-8") == "not yours\n"


class FakeMsvcrt:
    """``msvcrt.locking`` as Windows does it: one byte range from the file position, per
    handle; LK_NBLCK refused with EACCES when another handle holds it. Records what is held."""

    LK_UNLCK, LK_LOCK, LK_NBLCK = 0, 1, 2

    def __init__(self) -> None:
        self.held: dict[tuple[int, int, int], int] = {}  # (device, inode, offset) -> fd

    def locking(self, fd: int, mode: int, nbytes: int) -> None:
        assert nbytes == 1
        stat = os.fstat(fd)
        key = (stat.st_dev, stat.st_ino, os.lseek(fd, 0, os.SEEK_CUR))
        if mode == self.LK_NBLCK:
            if key in self.held:
                raise PermissionError(errno.EACCES, "Permission denied")
            self.held[key] = fd
        elif mode == self.LK_UNLCK:
            if self.held.get(key) != fd:
                raise PermissionError(errno.EACCES, "Permission denied")
            del self.held[key]
        else:
            raise AssertionError(f"unexpected mode {mode}")


@pytest.fixture
def windows_lock(monkeypatch):
    """The Windows lock class, run here through the msvcrt stand-in."""
    fake = FakeMsvcrt()
    monkeypatch.setattr(locks, "_LOCK", locks._MsvcrtLock(fake))
    return fake


def test_windows_a_refused_task_reads_the_holders_record_past_the_locked_byte(tmp_path, windows_lock):
    path = tmp_path / "task.lock"
    other = os.open(path, os.O_RDWR | os.O_CREAT)  # another process's handle, holding the lock
    try:
        os.write(other, b"4242 db.reset")
        assert locks._LOCK.try_lock(other, shared=False)
        # Windows would refuse reads of a locked byte: the lock lies past any record
        assert [key[2] for key in windows_lock.held] == [locks.WINDOWS_LOCK_OFFSET]
        assert locks.WINDOWS_LOCK_OFFSET > 200  # _holder reads up to 200 bytes
        for shared in (False, True):  # no shared mode on Windows: an apply is refused too
            with pytest.raises(BackendError) as refused:
                with locks.hold(path, "db.apply", "the target", shared=shared):
                    pytest.fail("got a lock another handle holds")
            assert str(refused.value).startswith("another db.reset of the target is running (pid 4242; lock ")
        locks._LOCK.unlock(other)
    finally:
        os.close(other)
    with locks.hold(path, "db.apply", "the target"):
        assert path.read_bytes() == f"{os.getpid()} db.apply".encode()  # the file did not grow
        assert len(windows_lock.held) == 1
    assert windows_lock.held == {}  # unlocked explicitly, not left to the handle's close


def test_windows_an_unexpected_locking_error_is_not_taken_for_another_holder(tmp_path, monkeypatch):
    class Broken(FakeMsvcrt):
        def locking(self, fd, mode, nbytes):
            raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setattr(locks, "_LOCK", locks._MsvcrtLock(Broken()))
    with pytest.raises(OSError, match="Bad file descriptor"):
        with locks.hold(tmp_path / "task.lock", "db.reset", "the target"):
            pytest.fail("locked without a lock")


def test_a_bookkeeping_lock_waits_a_bounded_while_then_names_the_holder(tmp_path, holder):
    first = holder("exclusive", "db.reset")
    with pytest.raises(BackendError) as refused:
        with locks.waiting(tmp_path / "task.lock", timeout=0.1):
            pytest.fail("got a lock another process holds")
    assert f"the lock {tmp_path / 'task.lock'} was still held after 0 s ({first.pid} db.reset)" in str(
        refused.value
    )
    first.stdin.write("\n")  # the holder releases it and exits
    first.stdin.flush()
    first.wait(timeout=30)
    with locks.waiting(tmp_path / "task.lock", timeout=30):
        pass


# -- the holder's record (issue 17, part 7: a refusal named "another db.downply") ------------


def test_a_refusal_names_the_current_holders_task_not_a_longer_one_written_before(tmp_path, holder):
    """Each holder replaces the record: a shorter task name after a longer one leaves nothing of it."""
    first = holder("shared", "db.reapply")
    first.communicate("\n", timeout=30)  # released
    second = holder("exclusive", "db.down")
    with pytest.raises(BackendError) as refused:
        with locks.hold(tmp_path / "task.lock", "db.reset", "the target"):
            pytest.fail("got a lock another process holds")
    assert str(refused.value).startswith(f"another db.down of the target is running (pid {second.pid}; lock ")


class Refusing:
    """A lock that another holder always has (the record in the file is the last holder's)."""

    def try_lock(self, fd: int, shared: bool) -> bool:
        return False

    def unlock(self, fd: int) -> None:
        raise AssertionError("never locked")


def test_the_record_is_exactly_pid_and_task_each_time(tmp_path, monkeypatch):
    path = tmp_path / "task.lock"
    for task in ("db.reapply", "db.down", "db.reset", "db.x"):
        with locks.hold(path, task, "the target"):
            assert path.read_bytes() == f"{os.getpid()} {task}".encode()
            assert locks._holder(path) == f"{os.getpid()} {task}"
    monkeypatch.setattr(locks, "_LOCK", Refusing())
    with pytest.raises(BackendError) as refused:
        with locks.hold(path, "db.apply", "the cluster", shared=True):
            pytest.fail("locked without a lock")
    assert str(refused.value) == (
        f"another db.x of the cluster is running (pid {os.getpid()}; lock {path})\n"
        "  next step: wait for it to finish; nothing was changed by this one"
    )


def test_a_refusal_without_a_record_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(locks, "_LOCK", Refusing())
    with pytest.raises(BackendError) as refused:
        with locks.hold(tmp_path / "task.lock", "db.apply", "the cluster"):
            pytest.fail("locked without a lock")
    assert str(refused.value).startswith(f"another task of the cluster is running (pid ?; lock {tmp_path}")


def test_the_holders_record_is_read_as_text_and_bounded(tmp_path):
    path = tmp_path / "task.lock"
    assert locks._holder(path) == ""  # no file
    path.write_bytes(b"  77 db.reset \xff\n")
    assert locks._holder(path) == "77 db.reset \ufffd"  # stripped, an undecodable byte replaced
    path.write_bytes(b"1 " + b"x" * 500)
    assert locks._holder(path) == "1 " + "x" * 198  # at most 200 bytes of whatever is there
    if hasattr(os, "O_NOFOLLOW"):
        secret = tmp_path / "secret"
        secret.write_text("not a record", encoding="utf-8", newline="\n")
        path.unlink()
        path.symlink_to(secret)
        assert locks._holder(path) == ""  # a link is not followed


# -- exclusive and shared, in one process (flock conflicts between two opens of the file) ----

posix = pytest.mark.posix_only("flock is POSIX: Windows' msvcrt.locking has no shared mode")


def other_open_can_lock(path, shared: bool) -> bool:
    """Whether another open file description of ``path`` (as another process has) gets the lock."""
    fd = os.open(path, os.O_RDWR)
    try:
        if locks._FlockLock().try_lock(fd, shared):
            locks._FlockLock().unlock(fd)
            return True
        return False
    finally:
        os.close(fd)


@posix
def test_an_exclusive_hold_excludes_both_kinds_and_a_shared_one_only_exclusive(tmp_path):
    path = tmp_path / "task.lock"
    with locks.hold(path, "db.reset", "t"):
        assert not other_open_can_lock(path, shared=True)
        assert not other_open_can_lock(path, shared=False)
    with locks.hold(path, "db.apply", "t", shared=True):
        assert other_open_can_lock(path, shared=True)
        assert not other_open_can_lock(path, shared=False)
    assert other_open_can_lock(path, shared=False)  # released


@posix
def test_an_error_inside_releases_the_lock(tmp_path):
    path = tmp_path / "deeper" / "still" / "task.lock"  # its directories are made
    with pytest.raises(RuntimeError, match="boom"):
        with locks.hold(path, "db.reset", "t"):
            raise RuntimeError("boom")
    assert other_open_can_lock(path, shared=False)
    assert oct(os.lstat(path).st_mode & 0o777) == "0o600"


@posix
def test_a_bookkeeping_lock_waits_for_a_holder_that_lets_go(tmp_path):
    import threading

    path = tmp_path / "state.lock"
    path.write_bytes(b"")
    fd = os.open(path, os.O_RDWR)
    assert locks._FlockLock().try_lock(fd, False)
    releaser = threading.Timer(0.3, lambda: locks._FlockLock().unlock(fd))
    releaser.start()
    try:
        with locks.waiting(path, timeout=30):
            assert not releaser.is_alive()  # it waited for the release
            assert not other_open_can_lock(path, shared=True)
        assert other_open_can_lock(path, shared=False)  # and let go itself
    finally:
        releaser.join()
        os.close(fd)


@posix
def test_a_bookkeeping_lock_names_no_record_when_there_is_none(tmp_path):
    path = tmp_path / "state.lock"
    path.write_bytes(b"")
    fd = os.open(path, os.O_RDWR)
    try:
        assert locks._FlockLock().try_lock(fd, False)
        with pytest.raises(BackendError) as refused:
            with locks.waiting(path, timeout=0.05):
                pytest.fail("got a held lock")
        assert str(refused.value) == (
            f"the lock {path} was still held after 0 s (no record)\n"
            "  next step: another leaddb task seems stuck: end it, then run the task again"
        )
    finally:
        os.close(fd)


@pytest.mark.parametrize("code", [errno.EACCES, getattr(errno, "EDEADLOCK", errno.EDEADLK)])
def test_windows_both_refusals_of_lk_nblck_mean_another_holder(tmp_path, code):
    class Held(FakeMsvcrt):
        def locking(self, fd, mode, nbytes):
            raise OSError(code, os.strerror(code))

    fd = os.open(tmp_path / "task.lock", os.O_RDWR | os.O_CREAT)
    try:
        lock = locks._MsvcrtLock(Held())
        assert lock.try_lock(fd, shared=True) is False
        lock.unlock(fd)  # an unlock that fails is not an error (nothing was held)
    finally:
        os.close(fd)


def test_windows_locks_one_byte_past_the_record_and_unlocks_it(tmp_path, windows_lock):
    path = tmp_path / "task.lock"
    with locks.hold(path, "db.reset", "t"):
        ((_, _, offset),) = windows_lock.held
        assert offset == locks.WINDOWS_LOCK_OFFSET == 1 << 16
    assert windows_lock.held == {}


def test_the_platforms_lock():
    assert isinstance(locks._platform_lock(), locks._MsvcrtLock if platforms.IS_WINDOWS else locks._FlockLock)


@pytest.mark.posix_only("a stand-in msvcrt on a POSIX host (the Windows view supplies its own)")
def test_the_platforms_lock_on_windows_is_msvcrts(monkeypatch):
    fake = FakeMsvcrt()  # as on Windows: msvcrt's
    monkeypatch.setattr(locks.platforms, "IS_WINDOWS", True)
    monkeypatch.setitem(sys.modules, "msvcrt", fake)
    windows = locks._platform_lock()
    assert isinstance(windows, locks._MsvcrtLock) and windows.msvcrt is fake


@pytest.mark.posix_only("POSIX removes an open file, Windows refuses to; its half is patched in")
def test_windows_a_lock_file_is_always_the_one_at_its_path(tmp_path, monkeypatch):
    """Windows removes no open file: the check that a removed file's lock was taken is POSIX's."""
    path = tmp_path / "task.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        assert locks._still_at(fd, path)
        os.rename(path, tmp_path / "moved.lock")  # as a holder's removal would leave it, on POSIX
        assert not locks._still_at(fd, path)
        monkeypatch.setattr(locks.platforms, "IS_WINDOWS", True)
        assert locks._still_at(fd, path)
    finally:
        os.close(fd)


# -- shared bookkeeping locks, and lock files removed by their holder (issue 17, part 6) -----


@posix
def test_a_shared_bookkeeping_lock_admits_shared_holders_only(tmp_path):
    path = tmp_path / "pristine.lock"
    with locks.waiting(path, shared=True):
        assert other_open_can_lock(path, shared=True)
        assert not other_open_can_lock(path, shared=False)
    with locks.waiting(path):
        assert not other_open_can_lock(path, shared=True)
    assert other_open_can_lock(path, shared=False)


@posix
def test_a_waiter_whose_lock_file_its_holder_removed_takes_the_new_files_lock(tmp_path):
    import threading

    path = tmp_path / "state-key.lock"
    done: list[str] = []

    def waiter():
        with locks.waiting(path, timeout=30):
            # the lock it holds is the one at the path: nobody else can take it
            done.append("exclusive" if not other_open_can_lock(path, shared=True) else "a removed file's")

    with locks.waiting(path):
        thread = threading.Thread(target=waiter)
        thread.start()
        time.sleep(0.3)  # the waiter has opened the file and waits for its lock
        locks.remove_held(path)
        assert not path.exists()
    thread.join(30)
    assert done == ["exclusive"]
    locks.remove_held(tmp_path / "never-there.lock")  # nothing to remove is no error


@pytest.mark.posix_only("only POSIX removes a file another process holds open (Windows refuses the removal)")
def test_a_task_lock_whose_file_was_removed_as_it_was_taken_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "reset.lock"

    class RemovedMeanwhile:
        """As when the holder this task waited for removed the file (and its directory)."""

        unlocked: list[int] = []

        def try_lock(self, fd: int, shared: bool) -> bool:
            path.unlink()
            return True

        def unlock(self, fd: int) -> None:
            self.unlocked.append(fd)

    lock = RemovedMeanwhile()
    monkeypatch.setattr(locks, "_LOCK", lock)
    with pytest.raises(BackendError) as refused:
        with locks.hold(path, "db.reset", "the cluster"):
            pytest.fail("held a removed file's lock")
    assert str(refused.value) == (
        f"the lock file {path} was removed as this task took it: what it guarded is gone\n"
        "  next step: run the task again"
    )
    assert len(lock.unlocked) == 1
