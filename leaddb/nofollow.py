"""Files opened without following a symbolic link in their last component: what the tool
keeps in its private directories (state, pointers, markers, the cache) is read and written only
through these, so a link planted in place of one of its files is refused, never followed.
A replacement is atomic (a new ``O_EXCL`` file renamed over the old)."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_BINARY = getattr(os, "O_BINARY", 0)


def open_nofollow(path: Path, flags: int, mode: int = 0o600) -> int:
    """``os.open`` that refuses a symbolic link in the last component (ELOOP)."""
    return os.open(path, flags | NOFOLLOW | _BINARY, mode)


def read_bytes(path: Path) -> bytes:
    with os.fdopen(open_nofollow(path, os.O_RDONLY), "rb") as f:
        return f.read()


def read_utf8(path: Path) -> str:
    return read_bytes(path).decode("utf-8")


def replace_utf8(path: Path, text: str) -> None:
    """Replace ``path`` atomically: a new file (``O_EXCL``: never a planted one) renamed over
    it; a link at ``path`` is replaced, never followed."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode("utf-8"))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def append_utf8(path: Path, text: str) -> None:
    fd = open_nofollow(path, os.O_WRONLY | os.O_APPEND)
    with os.fdopen(fd, "ab") as f:
        f.write(text.encode("utf-8"))


def is_regular_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False
