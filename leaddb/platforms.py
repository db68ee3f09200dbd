"""Where the host's platform changes what the tool does: one place for every difference.

Each function that branches on the platform takes it as an argument defaulting to this host's,
so the Windows branches run in the Linux test suite too (``tests/test_platforms.py``). The
POSIX-only calls (users, ownership, modes, load) live here too: no other module names them
(``tests/test_windows_names.py`` holds that), and CI runs the suite once with them taken away
(Windows semantics, README).
"""

from __future__ import annotations

import errno
import ntpath
import os
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path, PureWindowsPath

IS_WINDOWS = sys.platform == "win32"

# Windows: ERROR_SHARING_VIOLATION, ERROR_LOCK_VIOLATION, ERROR_ACCESS_DENIED (a file being
# deleted while a handle is still open on it)
_SHARING_VIOLATIONS = {32, 33, 5}


def executable(name: str, *, windows: bool = IS_WINDOWS) -> str:
    return name + (".exe" if windows else "")


def pg_config_bindir() -> Path | None:
    """Where ``pg_config --bindir`` says this host's PostgreSQL programs are (the real ones:
    on Debian, ``psql`` and ``pg_config`` on PATH are wrappers), or None when there is no
    ``pg_config`` or it names no directory."""
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        return None
    try:
        done = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    bindir = done.stdout.strip()
    return Path(bindir) if done.returncode == 0 and bindir else None


def is_sharing_violation(exc: OSError, *, windows: bool = IS_WINDOWS) -> bool:
    """A file still open in another process (Windows only: POSIX unlinks open files)."""
    return windows and (getattr(exc, "winerror", None) in _SHARING_VIOLATIONS or exc.errno == errno.EACCES)


def remove_tree(
    path: Path,
    *,
    windows: bool = IS_WINDOWS,
    attempts: int = 20,
    remove: Callable[[Path], None] = shutil.rmtree,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """``shutil.rmtree``, retried on Windows while a process still holds a file in the tree
    open: a just-stopped server may hold its log for a moment (pg_ctl's own source says so).
    The waits grow from 20 ms to 0.5 s, about 6 s in all; then the error goes to the caller."""
    delay = 0.02
    for attempt in range(attempts):
        try:
            remove(path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if attempt == attempts - 1 or not is_sharing_violation(exc, windows=windows):
                raise
            sleep(delay)
            delay = min(delay * 2, 0.5)


def rename(
    source: Path,
    target: Path,
    *,
    windows: bool = IS_WINDOWS,
    move: Callable[[Path, Path], None] = os.rename,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """``os.rename`` with :func:`remove_tree`'s retries on Windows (a just-stopped server may
    still hold a file of the directory open, and Windows renames no directory then); False when
    ``source`` does not exist."""
    moved = []

    def attempt(path: Path) -> None:
        move(path, target)
        moved.append(True)

    remove_tree(source, windows=windows, remove=attempt, sleep=sleep)
    return bool(moved)


def background_start_io(log: Path, *, windows: bool = IS_WINDOWS) -> dict:
    """``subprocess.run`` I/O arguments for a program that leaves a process behind (``pg_ctl
    start``). Never pipes: the server inherits them (on Windows pg_ctl starts it through
    ``cmd /C`` with inherited handles) and keeps them open, so reading to EOF never ends, and
    CPython's ``run`` on Windows, after a timeout, waits for that EOF with no timeout at all.
    Output goes to a file instead; the caller reads it after the program exits."""
    # never following a link planted at its name (the server's user can write where it lies)
    out = open(log, "wb", opener=lambda p, f: os.open(p, f | getattr(os, "O_NOFOLLOW", 0), 0o600))  # noqa: PTH123
    kwargs: dict = {"stdin": subprocess.DEVNULL, "stdout": out, "stderr": subprocess.STDOUT}
    if windows:
        kwargs["creationflags"] = getattr(subprocess, "CREATE_NO_WINDOW", 0x08000000)
    return kwargs


def copy_tree(
    source: Path, target: Path, owner: tuple[int, int] | None = None, *, windows: bool = IS_WINDOWS
) -> None:
    """Copy the directory ``source`` to ``target`` (which must not exist): directories and
    regular files with their mode bits, links as links (never followed), any other kind of
    entry refused; stops at the first failure, an OSError. On POSIX each entry is given to
    ``owner`` (uid, gid) as it is made and each file is copied by one ``sendfile`` from one
    descriptor to another, half the time of ``shutil.copytree`` plus a walk to chown it (a
    1,000-file data directory). Only for a ``target`` in a directory nobody else can enter."""
    if windows:
        try:
            shutil.copytree(source, target, symlinks=True, copy_function=_copy_file)
        except _CopyFailed as failed:
            raise failed.args[0] from None
        except shutil.Error as failed:
            raise OSError(failed.args[0][0][2]) from None
        return
    _copy_posix(os.fspath(source), os.fspath(target), os.lstat(source).st_mode, owner)


class _CopyFailed(Exception):
    """Ends a copy at its first failure (``copytree`` would go on through every file)."""


def _copy_file(source: str, target: str) -> str:
    try:
        return shutil.copy(source, target)
    except OSError as exc:
        raise _CopyFailed(exc) from exc


def _copy_posix(source: str, target: str, mode: int, owner: tuple[int, int] | None) -> None:
    os.mkdir(target, 0o700)
    with os.scandir(source) as listing:
        entries = list(listing)
    for entry in entries:
        into = os.path.join(target, entry.name)
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            _copy_posix(entry.path, into, st.st_mode, owner)
        elif stat.S_ISREG(st.st_mode):
            _copy_file_posix(entry.path, into, st, owner)
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(entry.path), into)
            if owner:
                os.lchown(into, *owner)
        else:
            raise OSError(errno.EINVAL, "neither a file, a directory nor a link", entry.path)
    if owner:
        os.chown(target, *owner, follow_symlinks=False)
    os.chmod(target, stat.S_IMODE(mode), follow_symlinks=False)


def _copy_file_posix(source: str, target: str, st: os.stat_result, owner: tuple[int, int] | None) -> None:
    reading = os.open(source, NOFOLLOW_READ)
    try:
        writing = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            offset, left = 0, os.fstat(reading).st_size
            while left > 0:
                sent = os.sendfile(writing, reading, offset, left)
                if sent == 0:  # the source shrank meanwhile
                    break
                offset, left = offset + sent, left - sent
            if owner:
                os.fchown(writing, *owner)
            os.fchmod(writing, stat.S_IMODE(st.st_mode))
        finally:
            os.close(writing)
    finally:
        os.close(reading)


def start_detached(argv: list[str], log: int, user: str | None, cwd: Path | None = None) -> subprocess.Popen:
    """Start a program that outlives this process (the postmaster), as ``pg_ctl start`` does:
    in a session of its own (a Ctrl-C at this terminal does not reach it), standard input from
    nothing, its output appended to the open file ``log``, run as ``user`` (POSIX), in ``cwd``
    (where ``user`` may be: a checkout under root's home is not). :func:`let_go` keeps the
    handle once it runs."""
    return subprocess.Popen(
        argv,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        close_fds=True,
        **run_as(user),
    )


def let_go(process: subprocess.Popen) -> threading.Thread:
    """Leave a process meant to outlive this one (the postmaster) to itself, as ``pg_ctl
    start`` does. It stays this process's child, so a daemon thread waits for it: it is reaped
    the moment it ends, and never lingers as a zombie that still holds its pid (and, for a
    killed postmaster, its shared memory) while a process that lives on (an in-process run,
    an embedding program) goes on. The thread, for a caller that wants to join it."""
    reaper = threading.Thread(target=process.wait, name=f"reaper of pid {process.pid}", daemon=True)
    reaper.start()
    return reaper


# How a postmaster is asked to stop (PostgreSQL's documented signals; pg_ctl sends the same).
_POSTMASTER_STOP = {"smart": "SIGTERM", "fast": "SIGINT", "immediate": "SIGQUIT"}


def stop_postmaster(pid: int, mode: str) -> None:
    """Send the postmaster ``pid`` the signal of shutdown ``mode`` (smart, fast, immediate;
    POSIX: Windows' pg_ctl stops it through an event)."""
    import signal

    os.kill(pid, getattr(signal, _POSTMASTER_STOP[mode]))


def docker_mount_source(path: Path, *, windows: bool = IS_WINDOWS) -> str:
    """A bind mount's host path as the engine wants it. On Windows: absolute with its drive
    letter as the user sees it (``Path.resolve()`` would turn a mapped drive into a UNC
    ``\\\\server\\share`` path, which Docker Desktop cannot mount)."""
    if windows:
        return str(PureWindowsPath(ntpath.abspath(str(path))))
    return str(path.resolve())


def run_as(user: str | None) -> dict:
    """``subprocess`` arguments that run a program as ``user`` (POSIX, as root): its uid, its
    primary group and its supplementary groups, none of root's (``user=`` alone would keep
    root's groups, and the server would read what only root's group may)."""
    if not user:
        return {}
    import pwd

    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": os.getgrouplist(user, entry.pw_gid)}


# -- users and ownership: POSIX only (on Windows the ACLs of per-user directories do this) -----


def owners_guard_files(*, windows: bool | None = None) -> bool:
    """Whether a file's owner and mode bits say who may use it (POSIX), so a private directory
    is checked by them. On Windows they do not (``st_uid`` is 0, the mode is made up): the ACLs
    of the per-user directories the state lives in do that job."""
    return not (IS_WINDOWS if windows is None else windows)


def server_sockets_are_files(*, windows: bool | None = None) -> bool:
    """Whether the PostgreSQL server listens on a Unix-domain socket in a directory of ours
    (POSIX); on Windows the local cluster listens on 127.0.0.1 only."""
    return not (IS_WINDOWS if windows is None else windows)


def can_identify_postmaster(*, windows: bool | None = None) -> bool:
    """Whether a live pid can be told to be a given postmaster (POSIX: its ``/proc`` cwd and
    arguments, ``kill(pid, 0)``); Windows' pg_ctl manages the postmaster itself."""
    return not (IS_WINDOWS if windows is None else windows)


def terminal_tables_need_rich(*, windows: bool | None = None) -> bool:
    """Whether a table shown on a terminal is drawn by rich, which asks a Windows console what
    it can show (a legacy console gets other box characters); elsewhere the tool draws it."""
    return IS_WINDOWS if windows is None else windows


def running_as_root(*, windows: bool = IS_WINDOWS) -> bool:
    return not windows and os.geteuid() == 0


def effective_ids() -> tuple[int, int]:
    """This process's effective uid and gid (POSIX)."""
    return os.geteuid(), os.getegid()


def user_ids(name: str, *, windows: bool = IS_WINDOWS) -> tuple[int, int] | None:
    """The uid and primary gid of the user ``name``; None when there is none (or on Windows)."""
    if windows:
        return None
    import pwd

    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid


def describe_owner(uid: int) -> str:
    """``name (uid N)``, or ``uid N`` where no user has that uid (or there is no user database)."""
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def chown(path: str | os.PathLike, uid: int, gid: int, *, follow_symlinks: bool = True) -> None:
    """``os.chown`` (POSIX, as root); ``follow_symlinks=False`` changes a link itself (``lchown``)."""
    os.chown(path, uid, gid, follow_symlinks=follow_symlinks)


def physical_memory() -> int | None:
    """This machine's memory in bytes (POSIX ``sysconf``); None where that is not known."""
    if hasattr(os, "sysconf") and "SC_PHYS_PAGES" in os.sysconf_names:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return None


def load_average() -> tuple[float, float, float] | None:
    """The 1, 5 and 15-minute load averages; None where the system keeps none (Windows)."""
    try:
        return os.getloadavg()
    except (AttributeError, OSError):
        return None


def set_mode_fd(fd: int, mode: int, group: int | None = None) -> None:
    """The mode (and group, when given) of the open file ``fd`` (POSIX: ``fchown``, ``fchmod``)."""
    if group is not None:
        os.fchown(fd, -1, group)
    os.fchmod(fd, mode)


def bind_probe(address: str, port: int, *, windows: bool = IS_WINDOWS) -> OSError | None:
    """Bind ``address:port`` as a server would, to learn whether something listens there: the
    error, or None when the port is free. A port held only by connections of the last run in
    TIME_WAIT counts as free (SO_REUSEADDR on POSIX; on Windows SO_REUSEADDR would even allow
    stealing a listening port, so its exclusive mode instead)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        if windows:
            probe.setsockopt(
                socket.SOL_SOCKET, getattr(socket, "SO_EXCLUSIVEADDRUSE", socket.SO_REUSEADDR), 1
            )
        else:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError as exc:
            return exc
    return None


# Besides Ctrl-C (SIGINT, everywhere), what asks a running task to stop: on POSIX, SIGTERM (kill,
# a service manager, a CI runner cancelling a job) and SIGHUP (the terminal went away); on
# Windows, SIGBREAK, which the C runtime raises for Ctrl-Break and for the console window being
# closed (CTRL_CLOSE_EVENT; Windows ends the process about 5 s later). Windows has no SIGHUP, and
# its SIGTERM is never sent by another process. Names with their usual numbers, looked up when
# asked: nothing outside this module names a signal only one platform has.
_STOP_SIGNALS = {"posix": (("SIGTERM", 15), ("SIGHUP", 1)), "windows": (("SIGBREAK", 21),)}


def stop_signals(*, windows: bool = IS_WINDOWS) -> tuple[tuple[str, int], ...]:
    """The signals other than SIGINT that ask a task to stop, as (name, number) of this host's
    ``signal`` module (the usual number where the host has no such signal: another platform's)."""
    import signal

    wanted = _STOP_SIGNALS["windows" if windows else "posix"]
    return tuple((name, int(getattr(signal, name, number))) for name, number in wanted)


def docker_uses_named_pipes(*, windows: bool | None = None) -> bool:
    """Whether docker-py reaches the engine by a Windows named pipe (it needs pywin32 for it)."""
    return IS_WINDOWS if windows is None else windows


def docker_start_hint(*, windows: bool | None = None) -> str:
    """What to do when no Docker engine answers, on this platform."""
    if IS_WINDOWS if windows is None else windows:
        return "start Docker Desktop and wait until it says the engine is running"
    return (
        "start the engine (sudo systemctl start docker; in CI: bash .ci/docker-engine.sh start "
        "and export DOCKER_HOST), or use --backend local"
    )


def docker_default_host(*, windows: bool = IS_WINDOWS) -> str:
    """Where docker-py looks when DOCKER_HOST is unset: Docker Desktop's named pipe on Windows."""
    return "npipe:////./pipe/docker_engine" if windows else "unix:///var/run/docker.sock"


# -- reading a file that someone else may have planted ------------------------------------------

# Windows: a reparse point that stands for another path (a symbolic link, a junction, a WSL link)
_NAME_SURROGATE = 0x20000000

# open(2) flags for reading a file of a directory we do not trust: never through a link in the
# last component (POSIX), never blocking on a FIFO (POSIX), binary (Windows), not inherited
NOFOLLOW_READ = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_BINARY", 0)
    | getattr(os, "O_CLOEXEC", 0)
)
# a directory opened so that its files are read relative to it (POSIX); None where open(2) has
# no O_DIRECTORY or os.open/os.listdir take no directory descriptor (Windows)
DIRECTORY_READ = (
    os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    if getattr(os, "O_DIRECTORY", 0) and os.open in os.supports_dir_fd and os.listdir in os.supports_fd
    else None
)


def is_link(st: os.stat_result) -> bool:
    """Whether ``lstat`` found a link rather than a file or directory: a symbolic link, or on
    Windows any reparse point standing for another path (a junction too, which ``S_ISLNK`` does
    not show)."""
    return stat.S_ISLNK(st.st_mode) or bool(getattr(st, "st_reparse_tag", 0) & _NAME_SURROGATE)
