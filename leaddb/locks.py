"""A non-blocking lock on a file (flock on POSIX, msvcrt on Windows), held by every task
that changes a server or its databases.

Exclusive holders (reset, down, bench) exclude everyone; shared holders (apply, reapply,
whose files the server-side advisory lock already serialises) exclude only exclusive ones.
A task that cannot get the lock is refused at once with the holder's pid and task, never
left to race. The OS drops the lock when the holder exits, so a crashed task never leaves
a stale lock behind. Nothing nests task locks (``verify`` runs its steps one after another,
each taking and releasing its own): a second hold in the same process is refused like any other.

Windows' ``msvcrt.locking`` has no shared mode: there, shared holders exclude each other
too (a second concurrent apply is refused rather than queued).
"""

from __future__ import annotations

import errno
import os
import time
from contextlib import contextmanager
from pathlib import Path

from leaddb import platforms
from leaddb.errors import BackendError

# Windows: lock a byte far past the holder's record. Its byte-range locks are mandatory: a
# lock over the record would hide it from the very process the lock refuses.
WINDOWS_LOCK_OFFSET = 1 << 16
_REFUSED = {errno.EACCES, getattr(errno, "EDEADLOCK", errno.EDEADLK)}  # what LK_NBLCK raises


class _FlockLock:
    """POSIX: ``flock``, shared or exclusive, on the whole file (reads are never blocked)."""

    def try_lock(self, fd: int, shared: bool) -> bool:
        import fcntl

        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def unlock(self, fd: int) -> None:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_UN)


class _MsvcrtLock:
    """Windows: ``msvcrt.locking`` of one byte at WINDOWS_LOCK_OFFSET (it locks from the file
    position, so both calls seek there first). No shared mode. Takes the ``msvcrt`` module, so
    the tests drive this class on every platform through a stand-in."""

    def __init__(self, msvcrt) -> None:
        self.msvcrt = msvcrt

    def try_lock(self, fd: int, shared: bool) -> bool:
        os.lseek(fd, WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        try:
            self.msvcrt.locking(fd, self.msvcrt.LK_NBLCK, 1)
            return True
        except OSError as exc:
            if exc.errno in _REFUSED:
                return False
            raise

    def unlock(self, fd: int) -> None:
        os.lseek(fd, WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        try:
            self.msvcrt.locking(fd, self.msvcrt.LK_UNLCK, 1)
        except OSError:
            pass


def _platform_lock():
    if platforms.IS_WINDOWS:  # pragma: no cover - the class itself runs in every test run
        import msvcrt

        return _MsvcrtLock(msvcrt)
    return _FlockLock()


_LOCK = _platform_lock()


def _holder(path: Path) -> str:
    """What the holder wrote into the lock file: "pid task"."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0))
        with os.fdopen(fd, "rb") as f:
            return f.read(200).decode("utf-8", "replace").strip()
    except OSError:
        return ""


def _open(path: Path) -> int:
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    try:
        return os.open(path, flags, 0o600)
    except OSError as exc:
        raise BackendError(
            f"cannot open the lock file {path}: {exc.strerror}",
            hint="the lock file must be a regular file of yours, not a link; remove it and retry",
        ) from None


@contextmanager
def hold(path: Path, task: str, target: str, *, shared: bool = False):
    """Hold the lock at ``path`` for ``task`` (e.g. "db.reset") on ``target`` (what it changes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _open(path)
    try:
        if not _LOCK.try_lock(fd, shared):
            pid, _, running = _holder(path).partition(" ")
            raise BackendError(
                f"another {running or 'task'} of {target} is running (pid {pid or '?'}; lock {path})",
                hint="wait for it to finish; nothing was changed by this one",
            )
        if not _still_at(fd, path):  # removed (with its directory) by the holder we waited for
            _LOCK.unlock(fd)
            raise BackendError(
                f"the lock file {path} was removed as this task took it: what it guarded is gone",
                hint="run the task again",
            )
        # the last holder's record (of several shared holders, one of them)
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()} {task}".encode())
        try:
            yield
        finally:
            _LOCK.unlock(fd)  # explicitly: Windows does not promise when a close releases it
    finally:
        os.close(fd)


@contextmanager
def waiting(path: Path, *, shared: bool = False, timeout: float = 30.0):
    """A lock for bookkeeping that takes moments (not a task's lock): waits for the holder, a
    bounded while, instead of refusing. ``shared`` holders exclude only exclusive ones (not on
    Windows, where every holder excludes the others). A holder may remove the lock file while
    it holds it (:func:`remove_held`): a waiter that then gets the removed file's lock lets it
    go and takes the lock of the file now at ``path`` instead."""
    deadline = time.monotonic() + timeout
    while True:
        fd = _open(path)
        try:
            while not _LOCK.try_lock(fd, shared):
                if time.monotonic() > deadline:
                    raise BackendError(
                        f"the lock {path} was still held after {timeout:.0f} s "
                        f"({_holder(path) or 'no record'})",
                        hint="another leaddb task seems stuck: end it, then run the task again",
                    )
                time.sleep(0.01)
            if not _still_at(fd, path):
                _LOCK.unlock(fd)
                continue
            try:
                yield
            finally:
                _LOCK.unlock(fd)
            return
        finally:
            os.close(fd)


def _still_at(fd: int, path: Path) -> bool:
    """Whether ``fd`` is the file at ``path`` now (not one removed since it was opened).
    Windows removes no open file: there it always is."""
    if platforms.IS_WINDOWS:  # pragma: no cover - and its stat's file ids are not needed
        return True
    try:
        st = os.lstat(path)
    except OSError:
        return False
    here = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (here.st_dev, here.st_ino)


def remove_held(path: Path) -> None:
    """Remove a lock file whose :func:`waiting` lock the caller holds (its waiters take the
    lock of a new file, see :func:`waiting`). Windows removes no open file: there it stays."""
    try:
        path.unlink()
    except OSError:
        pass
