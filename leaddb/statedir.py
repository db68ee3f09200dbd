"""Where the private directories are: the local backend's cluster, socket, locks and state,
and every backend's task locks; the per-checkout pointers to them, and what became of each.

Nothing here trusts a name under a shared directory. Two places, both the invoking user's:

* the **user directory** (``LEADDB_CACHE_DIR``, else platformdirs' per-user cache directory,
  e.g. ``~/.cache/leaddb``): created ``0700``, checked on every use. It holds the Docker
  backend's task locks and, per checkout, a *pointer* (``state-<digest of the checkout's
  path>.json``) to that checkout's state directory, and one more (``shared.json``) to the
  directory every checkout shares.
* the **state directory** of one checkout: ``LEADDB_STATE_DIR`` when set, else a
  ``tempfile.mkdtemp`` directory (an unpredictable name) on the RAM disk when it has room,
  else in the temp dir. Created ``0700`` (as root ``root:<server group> 0710``, see
  ``permissions.wanted_mode``), checked with ``lstat`` on every use: owned by the current
  user, a real directory (not a symbolic link), and no permission looser than what is created.
  A pointer whose directory has gone (the RAM disk is emptied at reboot) or was replaced by
  someone else's is re-pointed at a new ``mkdtemp`` directory; ``LEADDB_STATE_DIR`` is refused
  instead, with the next step, since the user chose that path.
* the **shared directory** (:func:`shared_dir`): made like a state directory, one per user,
  for what every checkout uses alike (the local backend's pristine ``initdb`` output).

A directory a pointer names carries a marker (``.leaddb-state``) saying whose it is (the
pointer's record: the checkout's path). When a checkout is gone (its directory deleted), the
local backend removes what its pointer names (:func:`pointers`, :func:`checkout_gone`), but only
a directory :func:`made_here` for that pointer: ours, private, its marker naming that checkout.

Each directory is made and checked by ``leaddb.permissions``; the files in them are read and
written without following links (``leaddb.nofollow``); removal goes through a tombstone
(``leaddb.tombstones``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from leaddb import locks, platforms
from leaddb.nofollow import is_regular_file, read_utf8, replace_utf8
from leaddb.permissions import ensure, verify, wanted_mode

APP = "leaddb"
STATE_DIR_ENV = "LEADDB_STATE_DIR"
CACHE_DIR_ENV = "LEADDB_CACHE_DIR"
STATE_MARKER = ".leaddb-state"  # in every directory a pointer names: whose it is (the pointer's record)
POINTER_PREFIX = "state-"
SHARED_POINTER = "shared.json"
SHARED_RECORD = {"shared": "every checkout of this user"}
SHARED_LOCK = "shared.lock"
RAM_DISK = Path("/dev/shm")
RAM_DISK_MIN_FREE = 1 << 30


# -- where -----------------------------------------------------------------------------------


def scratch_root() -> Path:
    """Where throwaway clusters go: a RAM-backed tmpfs when there is one with room (the
    cluster is disposable and runs with fsync=off anyway; on a slow disk this halves
    initdb and makes CREATE DATABASE a memory copy), else the temp dir."""
    try:
        if (
            RAM_DISK.is_dir()
            and os.access(RAM_DISK, os.W_OK)
            and shutil.disk_usage(RAM_DISK).free >= RAM_DISK_MIN_FREE
        ):
            return RAM_DISK
    except OSError:
        pass
    return Path(tempfile.gettempdir())


_USER_HINT = (
    "it must be a directory of yours that nobody else can write to: fix or remove it "
    f"(it is re-created 0700), or point {CACHE_DIR_ENV} elsewhere"
)


def user_dir() -> Path:
    """The invoking user's private directory for pointers, locks and the cache (never the
    server's: 0700): ``LEADDB_CACHE_DIR`` when set, on every platform (the tests point it at a
    directory of their run), else platformdirs' per-user cache directory."""
    chosen = os.environ.get(CACHE_DIR_ENV)
    if chosen:
        return ensure(Path(chosen).absolute(), hint=_USER_HINT)
    from platformdirs import user_cache_dir

    return ensure(Path(user_cache_dir(APP, appauthor=False)), hint=_USER_HINT)


def lock_path(name: str) -> Path:
    """A lock file in the user directory, for a name such as a Compose project."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:80]
    return user_dir() / f"{safe}.lock"


def _explicit_hint(path: Path) -> str:
    mode, group = wanted_mode()
    fix = f"chmod {mode:04o} {path}" + (f" && chgrp {group} {path}" if group is not None else "")
    return (
        f"point {STATE_DIR_ENV} at a directory of your own that nobody else can write to (a path "
        f"that does not exist yet is created {mode:04o}), `{fix}` if it is yours, or unset {STATE_DIR_ENV}"
    )


def checkout_key(project_dir: Path) -> str:
    """The name a checkout's pointer and its lock carry: a digest of its resolved path."""
    return _key_of(str(project_dir.resolve()))


def _key_of(checkout: str) -> str:
    return hashlib.sha256(checkout.encode()).hexdigest()[:16]


def for_checkout(project_dir: Path, explicit: Path | None = None) -> Path:
    """The verified private state directory of the checkout at ``project_dir``: ``explicit``,
    else ``LEADDB_STATE_DIR``, else the per-user pointer's (made on first use)."""
    mode, group = wanted_mode()
    chosen = explicit or (
        Path(os.environ[STATE_DIR_ENV]).absolute() if os.environ.get(STATE_DIR_ENV) else None
    )
    if chosen is not None:
        return ensure(chosen, mode=mode, group=group, hint=_explicit_hint(chosen))
    home = user_dir()
    key = checkout_key(project_dir)
    # two tasks starting at once must agree on one directory (their task lock lives in it)
    return _pointed(
        home / f"{POINTER_PREFIX}{key}.json",
        {"checkout": str(project_dir.resolve())},
        lock=home / f"{POINTER_PREFIX}{key}.lock",
    )


def shared_dir(*, create: bool) -> Path | None:
    """The user's one directory shared by every checkout (the local backend's pristine
    ``initdb`` output lives there), behind the pointer ``shared.json`` like a checkout's state
    directory; None when there is none and ``create`` is False. The caller holds the lock that
    guards what is in it (:data:`SHARED_LOCK`, exclusively when ``create``)."""
    pointer = user_dir() / SHARED_POINTER
    if not create:
        mode, group = wanted_mode()
        return _follow(pointer, SHARED_RECORD, mode, group)
    return _pointed(pointer, SHARED_RECORD, lock=None)


def shared_lock() -> Path:
    """The lock of the shared directory's contents, in the user directory (it outlives them)."""
    return user_dir() / SHARED_LOCK


def _pointed(pointer: Path, record: dict, *, lock: Path | None) -> Path:
    """The directory ``pointer`` names when it is still ours, else a new ``mkdtemp`` directory
    on the scratch root, marked with ``record`` and pointed at (under ``lock``, or a lock the
    caller holds when None)."""
    mode, group = wanted_mode()
    found = _follow(pointer, record, mode, group)
    if found is not None:
        return found
    with locks.waiting(lock) if lock is not None else contextlib.nullcontext():
        found = _follow(pointer, record, mode, group)
        if found is not None:
            return found
        made = Path(tempfile.mkdtemp(prefix=f"{APP}-", dir=scratch_root()))
        verify(made, mode=mode, group=group, hint=_explicit_hint(made))
        replace_utf8(made / STATE_MARKER, json.dumps(record))
        replace_utf8(pointer, json.dumps({**record, "state_dir": str(made)}))
        return made


def recheck(path: Path) -> Path:
    """:func:`verify` again a state directory :func:`for_checkout` returned."""
    mode, group = wanted_mode()
    verify(path, mode=mode, group=group, hint=_explicit_hint(path))
    return path


def _follow(pointer: Path, record: dict, mode: int, group: int | None) -> Path | None:
    """The pointer's directory when it is still ours; None when there is no pointer or its
    directory is gone or not ours (after a reboot anyone may have made one of that name: it is
    left alone, and a new directory is made). A directory of ours with looser permissions is
    refused: only its owner can have changed them. One whose marker names another record is
    not used; one made before directories were marked gets its marker now."""
    try:
        target = Path(json.loads(read_utf8(pointer))["state_dir"])
        st = os.lstat(target)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if platforms.owners_guard_files() and (
        not stat.S_ISDIR(st.st_mode) or st.st_uid != platforms.effective_ids()[0]
    ):
        return None
    verify(target, mode=mode, group=group, hint=f"fix its permissions, or remove it and {pointer}")
    marker = target / STATE_MARKER
    if not os.path.lexists(marker):
        replace_utf8(marker, json.dumps(record))
    else:
        try:
            if json.loads(read_utf8(marker)) != record:
                return None  # another pointer's directory: not this one's to use
        except (OSError, ValueError):
            return None
    return target


# -- the pointers: what became of each checkout ------------------------------------------


@dataclass(frozen=True)
class Pointer:
    """One pointer of the user directory, as written by :func:`for_checkout` or :func:`shared_dir`."""

    path: Path  # the pointer file
    lock: Path | None  # its bookkeeping lock (a checkout's); None for the shared directory's
    record: dict  # what the directory's marker must say
    state_dir: Path

    @property
    def checkout(self) -> Path | None:
        named = self.record.get("checkout")
        return Path(named) if named else None


def pointers(home: Path) -> list[Pointer]:
    """Every pointer in ``home`` (the user directory) that reads as this module writes them: a
    regular file (never followed through a link), JSON, absolute paths, and a checkout's named
    by the digest of the checkout it records. Anything else is not this module's to act on.
    A glance: one small read per pointer, nothing under the directories they name."""
    found = []
    for path in sorted(home.glob(f"{POINTER_PREFIX}*.json")) + [home / SHARED_POINTER]:
        if not is_regular_file(path):
            continue
        file_name = path.name
        try:
            data = json.loads(read_utf8(path))
            state_dir = Path(data["state_dir"])
            if file_name == SHARED_POINTER:
                record, lock = SHARED_RECORD, None
                if {k: v for k, v in data.items() if k != "state_dir"} != record:
                    continue
            else:
                checkout = data["checkout"]
                if not isinstance(checkout, str) or not Path(checkout).is_absolute():
                    continue
                if file_name != f"{POINTER_PREFIX}{_key_of(checkout)}.json":
                    continue
                record, lock = {"checkout": checkout}, path.with_suffix(".lock")
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if state_dir.is_absolute():
            found.append(Pointer(path, lock, record, state_dir))
    return found


def checkout_gone(checkout: Path) -> bool:
    """Whether nothing is at ``checkout`` any more (or something that is not a directory).
    A checkout made again at the same path is not gone; a path that cannot be examined (a
    parent without search permission) is not taken for gone either."""
    try:
        st = os.stat(checkout)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:
        return False
    return not stat.S_ISDIR(st.st_mode)


def made_here(pointer: Pointer, others: list[Pointer], legacy: Callable[[Path], bool]) -> bool:
    """Whether ``pointer``'s directory is one this module made for it, and so may be removed
    with everything in it: a real directory of the current user's (``lstat``) that nobody else
    can write to, whose marker names the pointer's record. A directory made before markers
    (none in it) counts when ``legacy`` recognises its layout, it has the name ``mkdtemp`` gave
    it, and no other pointer names it."""
    path = pointer.state_dir
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISDIR(st.st_mode):
        return False
    if platforms.owners_guard_files() and (
        st.st_uid != platforms.effective_ids()[0] or stat.S_IMODE(st.st_mode) & 0o022
    ):
        return False
    marker = path / STATE_MARKER
    if os.path.lexists(marker):
        try:
            return is_regular_file(marker) and json.loads(read_utf8(marker)) == pointer.record
        except (OSError, ValueError):
            return False
    if any(other.path != pointer.path and other.state_dir == path for other in others):
        return False
    return path.name.startswith(f"{APP}-") and legacy(path)


def forget(pointer: Pointer) -> None:
    """Remove the pointer, then its lock file (the caller holds that lock)."""
    pointer.path.unlink(missing_ok=True)
    if pointer.lock is not None:
        locks.remove_held(pointer.lock)


def tree_size(path: Path) -> int:
    """Bytes in the files under ``path`` (links not followed), for telling the user what went."""
    total = 0
    for directory, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(directory, name)).st_size
            except OSError:
                pass
    return total
