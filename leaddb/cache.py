"""The per-user cache: results that cost time to build and can be rebuilt at any moment.

Entries live in the user directory (``leaddb.statedir.user_dir``: platformdirs' per-user
cache directory, e.g. ``~/.cache/leaddb``, created ``0700`` and checked with ``lstat`` on every
use). When that directory cannot be trusted, nothing is cached (:class:`Unavailable` says
why): no result is worth reading a file someone else could have written.

Entries are read only when they are regular files (a symbolic link, a FIFO or a directory in
their place is a miss, never followed or waited on) and replaced atomically. An entry that
cannot be read or parsed is a miss: the caller rebuilds it and writes it again. Nothing here
raises for a broken entry.
"""

from __future__ import annotations

import os
from pathlib import Path

from leaddb import statedir
from leaddb.errors import BackendError


class Unavailable(Exception):
    """The cache directory cannot be trusted or created; the message says which and why."""


def directory() -> Path:
    try:
        return statedir.user_dir()
    except BackendError as exc:
        raise Unavailable(f"{exc.detail}; {exc.hint}" if exc.hint else exc.detail) from None


def read(path: Path) -> str | None:
    """The entry's text, or None when it is missing, not a regular file, or unreadable."""
    if not statedir.is_regular_file(path):  # lstat: a link, a FIFO, a directory are misses
        return None
    try:
        return statedir.read_utf8(path)  # opened without following a link planted since
    except (OSError, UnicodeDecodeError):
        return None


def write(path: Path, text: str) -> bool:
    """Replace the entry atomically; whether it was written (a full disk is not an error)."""
    try:
        statedir.replace_utf8(path, text)
    except OSError:
        return False
    return True


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
