"""Crash-safe removal and building: a directory is first renamed to a *tombstone* in the same
private state directory (atomic), then removed; work is built in a tombstone and renamed into
place when complete. Leftover tombstones of an interrupted run are removed by the next
``db.reset``/``db.down`` (:func:`clear_tombstones`): only this module makes that name there,
and nobody else can write in a private directory."""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path

from leaddb import platforms

TOMBSTONE_PREFIX = ".tomb-"


def new_tombstone(state_dir: Path, purpose: str) -> Path:
    """A fresh private directory in ``state_dir`` that counts as garbage until renamed: work
    is built there and moved into place when complete, so an interruption leaves only garbage
    that the next :func:`clear_tombstones` removes."""
    return Path(tempfile.mkdtemp(prefix=f"{TOMBSTONE_PREFIX}{purpose}-", dir=state_dir))


def bury(path: Path, state_dir: Path) -> Path | None:
    """Rename ``path`` to a tombstone in ``state_dir`` (atomic); None when it does not exist."""
    tomb = state_dir / f"{TOMBSTONE_PREFIX}{path.name}-{secrets.token_hex(6)}"
    return tomb if platforms.rename(path, tomb) else None


def clear_tombstones(state_dir: Path, before_removal: Callable[[Path], None] | None = None) -> int:
    """Remove every tombstone left in ``state_dir`` (only this module makes that name there,
    and nobody else can write in it); ``before_removal`` sees each first. Returns how many."""
    removed = 0
    try:
        entries = list(os.scandir(state_dir))
    except FileNotFoundError:
        return 0
    for entry in entries:
        if not entry.name.startswith(TOMBSTONE_PREFIX):
            continue
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            if before_removal is not None:
                before_removal(path)
            platforms.remove_tree(path)
        else:
            try:
                path.unlink()
            except FileNotFoundError:
                pass
        removed += 1
    return removed


def remove(path: Path, state_dir: Path) -> None:
    """Crash-safe removal: bury, then remove the tombstone."""
    tomb = bury(path, state_dir)
    if tomb is not None:
        platforms.remove_tree(tomb)
