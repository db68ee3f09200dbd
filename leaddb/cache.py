"""The per-user cache: results that cost time to build and can be rebuilt at any moment.

Entries live in the user directory (``leaddb.statedir.user_dir``: platformdirs' per-user
cache directory, e.g. ``~/.cache/leaddb``, created ``0700`` and checked with ``lstat`` on every
use). When that directory cannot be trusted, nothing is cached (:class:`Unavailable` says
why): no result is worth reading a file someone else could have written.

Entries are read only when they are regular files of the invoking user that nobody else can
write (a symbolic link, a FIFO, a directory, a file of another owner or with a looser mode in
their place is a miss: never followed, waited on or believed) and replaced atomically (a new
file renamed over the old: a reader sees the old entry or the new one, never half of one). An
entry that cannot be read or parsed is a miss: the caller rebuilds it and writes it again.
Nothing here raises for a broken entry.

:func:`lookup` and :func:`store` keep JSON values under a key (a dict): the entry's name is a
digest of the key, and the entry holds the whole key, compared on every read, so a value is
only ever returned for exactly the key it was built for. :func:`code_version` is the part of
a key that says which code built the value.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
from functools import cache
from pathlib import Path

from leaddb import nofollow, platforms, statedir
from leaddb.errors import BackendError

# the longest an entry may be: a verdict on thousands of files is far less
MAX_ENTRY_BYTES = 64 << 20


class Unavailable(Exception):
    """The cache directory cannot be trusted or created; the message says which and why."""


def directory() -> Path:
    try:
        return statedir.user_dir()
    except BackendError as exc:
        raise Unavailable(f"{exc.detail}; {exc.hint}" if exc.hint else exc.detail) from None


def read(path: Path) -> str | None:
    """The entry's text, or None when it is missing, not a regular file of ours that only we
    can write, or unreadable."""
    if not nofollow.is_regular_file(path):  # lstat: a link, a FIFO, a directory are misses
        return None
    try:
        fd = nofollow.open_nofollow(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # no link planted since
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as f:
            if not _trusted(os.fstat(f.fileno())):
                return None
            data = f.read(MAX_ENTRY_BYTES + 1)
        return None if len(data) > MAX_ENTRY_BYTES else data.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _trusted(seen: os.stat_result) -> bool:
    """A regular file, and (where ``stat`` shows owners) ours, writable by nobody else, with no
    other name (a hard link from elsewhere could change it)."""
    if not stat.S_ISREG(seen.st_mode):
        return False
    if not platforms.owners_guard_files():  # Windows: the per-user directory's ACLs protect it
        return True
    return (
        seen.st_uid == platforms.effective_ids()[0]
        and not stat.S_IMODE(seen.st_mode) & 0o022
        and seen.st_nlink == 1
    )


def write(path: Path, text: str) -> bool:
    """Replace the entry atomically; whether it was written (a full disk is not an error)."""
    try:
        nofollow.replace_utf8(path, text)
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


def entry_name(prefix: str, key: dict) -> str:
    """``<prefix>-<digest of the key>.json``."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    return f"{prefix}-{digest}.json"


def lookup(prefix: str, key: dict):
    """The value stored under exactly ``key``, or None: no cache directory, no entry, an entry
    planted or broken, or one written for another key (its name is a digest of the key; the
    key it holds must be equal)."""
    try:
        path = directory() / entry_name(prefix, key)
    except Unavailable:
        return None
    text = read(path)
    if text is None:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("key") != key or "value" not in data:
        return None
    return data["value"]


def store(prefix: str, key: dict, value, keep: int) -> bool:
    """Keep ``value`` (JSON) under ``key``, and the ``keep`` newest entries of this prefix;
    whether it was written (no cache directory, a full disk: not an error)."""
    try:
        home = directory()
    except Unavailable:
        return False
    text = json.dumps({"key": key, "value": value}, sort_keys=True, separators=(",", ":"))
    written = write(home / entry_name(prefix, key), text + "\n")
    prune(home, f"{prefix}-*.json", keep)
    return written


# the distributions whose parsers build what is cached: a new version may read a file otherwise
PARSERS = ("pglast", "markdown-it-py")


@cache
def code_version() -> str | None:
    """A digest of the code that builds cached verdicts: every module of this package (its
    top level: the rules, the reading, the spec, and what they import), the versions of the
    parsers and of Python. None when the code cannot be read: then nothing is cached."""
    from importlib import metadata

    digest = hashlib.sha256(sys.version.encode())
    package = Path(__file__).resolve().parent
    try:
        for module in sorted(package.glob("*.py")):
            digest.update(b"\0" + module.name.encode() + b"\0" + module.read_bytes())
        for name in PARSERS:
            digest.update(f"\0{name}={metadata.version(name)}".encode())
    except (OSError, metadata.PackageNotFoundError):
        return None
    return digest.hexdigest()
