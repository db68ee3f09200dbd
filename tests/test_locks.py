"""The task lock: exclusive holders exclude everyone, shared holders only exclusive ones;
re-entrant in one process; refusals name the holder; never follows a planted link."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap

import pytest

from leaddb import locks, platforms
from leaddb.errors import BackendError

HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from leaddb import locks, platforms
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


def test_the_lock_is_reentrant_in_one_process_and_released_after(tmp_path, holder):
    path = tmp_path / "task.lock"
    with locks.hold(path, "db.verify", "the target"):
        with locks.hold(path, "db.bench", "the target"):
            with locks.hold(path, "db.reset", "the target"):
                pass
        assert str(path) in locks._held
    assert str(path) not in locks._held
    holder("exclusive")  # released: another process gets it


@pytest.mark.posix_only("O_NOFOLLOW is POSIX (and symbolic links need a privilege on Windows)")
def test_a_planted_link_at_the_lock_path_is_never_followed(tmp_path):
    precious = tmp_path / "precious.txt"
    precious.write_text("not yours\n", encoding="utf-8", newline="\n")
    (tmp_path / "task.lock").symlink_to(precious)
    with pytest.raises(BackendError, match="cannot open the lock file .*task.lock") as refused:
        with locks.hold(tmp_path / "task.lock", "db.reset", "the target"):
            pytest.fail("followed the link")
    assert "not a link" in str(refused.value)
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
