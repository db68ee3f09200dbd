"""Private directories, checked on every use: created ``0700`` (as root ``root:<server
group> 0710``, see :func:`wanted_mode`), and refused unless ``lstat`` shows a real directory
(not a symbolic link) owned by the current user that neither the group nor other users can
write to. Who the server runs as, when we are root.

On Windows the checks of owner and mode do not apply (the per-user directories are protected by
their ACLs, which ``stat`` does not show): the directories are created and used as they are.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from leaddb import platforms
from leaddb.errors import BackendError
from leaddb.nofollow import NOFOLLOW

SERVER_USER = "postgres"


# -- who we are ------------------------------------------------------------------------------


def server_ids(*, required: bool = False) -> tuple[int, int] | None:
    """The server user's uid and primary gid when running as root (the server then runs as
    that user: ``initdb`` and ``postgres`` refuse root); None when not root. As root without
    that user: None, or with ``required`` (a server is about to be made) a BackendError."""
    if not platforms.running_as_root():
        return None
    ids = platforms.user_ids(SERVER_USER)
    if ids is None and required:
        raise BackendError(
            f"running as root, the server must run as the {SERVER_USER!r} user, which does not exist",
            hint=f"create it (useradd --system {SERVER_USER}, or install postgresql-15, which does), "
            "or run the task as an unprivileged user",
        )
    return ids


def wanted_mode() -> tuple[int, int | None]:
    """The mode and group of a state directory as this module creates it.

    ``0700``, except as root: the server runs as ``postgres`` and must traverse the state
    directory to reach its cluster (data, socket, log), so the state directory is
    ``root:<postgres' group> 0710``: search (``x``) for that group only. That is the least that
    works: no read (the group cannot list the entries), no write (it cannot plant or rename
    anything in it), and nobody else may even traverse (``0711`` would let every user).
    """
    ids = server_ids()
    if ids is None:
        return 0o700, None
    return 0o710, ids[1]


# -- checks ----------------------------------------------------------------------------------


def _refuse(path: Path, problem: str, hint: str) -> BackendError:
    return BackendError(f"the private directory {path} {problem}", hint=hint)


def _describe_owner(uid: int) -> str:
    return platforms.describe_owner(uid)


def verify(path: Path, *, mode: int = 0o700, group: int | None = None, hint: str) -> None:
    """Refuse ``path`` unless ``lstat`` shows a real directory owned by the current user that
    neither the group nor other users can write to; then bring its mode (and ``group``, when
    ``mode`` grants the group anything) to what this module creates."""
    if not platforms.owners_guard_files():
        if not path.is_dir():
            raise _refuse(path, "is not a directory", hint)
        return
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise _refuse(path, f"cannot be examined: {exc.strerror}", hint) from None
    if stat.S_ISLNK(st.st_mode):
        raise _refuse(path, "is a symbolic link (it is never followed)", hint)
    if not stat.S_ISDIR(st.st_mode):
        raise _refuse(path, "is not a directory", hint)
    me = platforms.effective_ids()[0]
    if st.st_uid != me:
        raise _refuse(
            path,
            f"belongs to {_describe_owner(st.st_uid)}, not to you ({_describe_owner(me)})",
            hint,
        )
    actual = stat.S_IMODE(st.st_mode)
    if actual & 0o022:
        # someone else could have put anything in it: nothing in it can be trusted
        raise _refuse(path, f"has mode {actual:04o}: writable by the group or other users", hint)
    if actual & 0o077 != mode & 0o077 or (group is not None and st.st_gid != group):
        # ours and writable by nobody else: only its read/search bits differ from what this
        # module creates (mkdtemp's 0700, or a 0755 made by `mkdir -p`), so set them
        _set_mode(path, mode, group)


def _set_mode(path: Path, mode: int, group: int | None) -> None:
    """Set the mode (and group) through a descriptor opened without following a link."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | NOFOLLOW)
    try:
        platforms.set_mode_fd(fd, mode, group)
    finally:
        os.close(fd)


def ensure(path: Path, *, mode: int = 0o700, group: int | None = None, hint: str) -> Path:
    """``path`` as a private directory: created with ``mode`` when missing (its parents as
    usual), then :func:`verify`'d."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
    except OSError as exc:
        if isinstance(exc, FileExistsError):  # a parent on the way is a file
            problem = f"{exc.filename} exists and is not a directory"
        else:
            where = f" ({exc.filename})" if exc.filename and Path(exc.filename) != path else ""
            problem = f"{exc.strerror}{where}"
        raise BackendError(f"cannot create the private directory {path}: {problem}", hint=hint) from None
    verify(path, mode=mode, group=group, hint=hint)
    return path


def inside(path: str | Path, directory: Path) -> bool:
    """Whether ``path``, resolved, is ``directory`` (resolved) or lies inside it."""
    try:
        return Path(path).resolve().is_relative_to(directory.resolve())
    except (OSError, ValueError, RuntimeError):
        return False
