"""The per-user cache: results that cost time to rebuild and can be rebuilt at any moment.

The directory is platformdirs' per-user cache directory when platformdirs is installed
(``~/.cache/leaddb`` on Linux, ``%LOCALAPPDATA%\\leaddb\\Cache`` on Windows), else
``$XDG_CACHE_HOME/leaddb`` or ``~/.cache/leaddb``. It is created ``0700`` and checked with
``lstat`` on every use: a real directory (not a symbolic link) of the current user's (made
``0700`` again if it is looser, as pytest does with its temporary root). When it is not,
nothing is cached (:class:`Unavailable` says why): no result is worth trusting a file
someone else could have written.

Entries are opened without following symbolic links and replaced atomically (a private
temporary file renamed over the entry). An entry that cannot be read is a miss: the caller
rebuilds it and writes it again. Nothing here raises for a broken entry.

On Windows the owner and mode checks do not apply (the per-user directory is protected by
its ACLs, which ``stat`` does not show).
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

APP = "leaddb"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_BINARY = getattr(os, "O_BINARY", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_POSIX = os.name == "posix"


class Unavailable(Exception):
    """The cache directory cannot be trusted or created; the message says which and why."""


def location() -> Path:
    try:
        from platformdirs import user_cache_dir
    except ImportError:
        return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / APP
    return Path(user_cache_dir(APP, appauthor=False))


def directory() -> Path:
    """The cache directory, created if missing and checked (module docstring)."""
    return checked(location())


def checked(path: Path) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        info = os.lstat(path)
    except OSError as exc:
        raise Unavailable(f"cannot create {path}: {exc.strerror or exc}") from None
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise Unavailable(f"{path} is not a directory (a symbolic link or a file)")
    if _POSIX:
        if info.st_uid != os.geteuid():
            raise Unavailable(f"{path} belongs to uid {info.st_uid}, not to you")
        if info.st_mode & 0o077:  # yours, made by hand or under a loose umask: made private, as pytest does
            try:
                os.chmod(path, 0o700)  # a real directory: lstat said so
            except OSError as exc:
                raise Unavailable(f"cannot make {path} private (0700): {exc.strerror or exc}") from None
    return path


def read(path: Path) -> str | None:
    """The entry's text, or None when it is missing, not a regular file of ours, or unreadable."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _BINARY)  # a FIFO must not block us
    except OSError:
        return None  # missing, or a symbolic link (ELOOP)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or (_POSIX and info.st_uid != os.geteuid()):
            return None
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks).decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    finally:
        os.close(fd)


def write(path: Path, text: str) -> bool:
    """Replace the entry atomically; whether it was written (a full disk is not an error)."""
    try:
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError:
        return False
    try:
        with os.fdopen(fd, "wb") as file:  # mkstemp: O_EXCL, mode 0600
            file.write(text.encode("utf-8"))
        os.replace(temporary, path)  # replaces a symbolic link itself, never its target
        return True
    except OSError:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        return False


def prune(directory: Path, pattern: str, keep: int) -> None:
    """Remove all but the ``keep`` most recently written entries matching ``pattern``."""
    try:
        entries = sorted(
            ((os.lstat(p).st_mtime, p) for p in directory.glob(pattern)), key=lambda e: e[0], reverse=True
        )
        for _, path in entries[keep:]:
            path.unlink()  # removes a symbolic link itself
    except OSError:
        pass
