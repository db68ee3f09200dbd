"""Windows semantics on this Linux machine: the project's own modules see Python's standard
library as CPython 3.11 has it on Windows, as far as one Linux process can show it.

Enabled by ``LEADDB_TEST_WINDOWS_SEMANTICS=1`` with this directory on ``PYTHONPATH`` (``nox -s
tests`` adds it when the variable is set): its ``sitecustomize.py`` calls :func:`install` when
the interpreter starts, before pytest, ``tests/conftest.py`` or any ``leaddb`` module is
imported, and again in every Python child that inherits the environment (``invoke`` run by a
test, a test's ``python -c``).

**The project's modules** are ``leaddb`` (from the checkout or installed), ``tasks``,
``noxfile``, ``benchmarks`` and every module under ``tests/`` but this directory. Each of them
gets its own ``__builtins__`` whose ``__import__`` hands out, in place of the real modules:

* ``os``: only the names Windows' ``os`` has (:data:`WINDOWS_OS`): no ``getuid``/``geteuid``,
  ``fork``, ``setsid``, ``killpg``, ``chown``/``lchown``/``fchown``/``fchmod``, ``O_NOFOLLOW``,
  ``O_DIRECTORY``, ``getgrouplist``, ``getloadavg``, ``uname``, ``WIFEXITED``...;
  ``os.name == "nt"``; ``os.kill`` kills outright for any signal (Windows' TerminateProcess),
  and refuses 0 and 1 (there CTRL_C_EVENT and CTRL_BREAK_EVENT, console events, not a probe);
* ``signal``: only Windows' signals (SIGINT, SIGTERM, SIGABRT, SIGFPE, SIGILL, SIGSEGV, and
  SIGBREAK/CTRL_C_EVENT/CTRL_BREAK_EVENT): no SIGKILL, SIGHUP, SIGQUIT, SIGUSR1, SIGALRM, alarm,
  setitimer, pthread_kill...; ``Signals`` and ``valid_signals()`` hold those only;
* ``sys``: ``sys.platform == "win32"``, so ``leaddb.platforms.IS_WINDOWS`` is True and every
  branch on it takes the Windows side (``permissions`` skips owner and mode checks, ``locks`` uses
  ``msvcrt``, the local backend looks for ``initdb.exe``...);
* ``subprocess``: ``preexec_fn``, ``user``, ``group``, ``extra_groups`` raise ``ValueError`` and
  ``pass_fds`` fails, as on Windows; ``start_new_session``, ``process_group``,
  ``restore_signals`` and ``umask`` are ignored, as there; ``creationflags``/``startupinfo``
  (Windows-only, refused by Linux's Popen) are accepted and dropped; ``Popen.send_signal`` takes
  SIGTERM only and ``terminate()`` kills outright (TerminateProcess);
* ``shutil`` without ``chown``, ``time`` without ``tzset``, ``select`` without ``poll``/``epoll``;
* ``fcntl``, ``pwd``, ``grp``, ``resource``, ``termios``, ``tty``, ``pty``, ``posix``, ``crypt``,
  ``spwd``, ``syslog``, ``nis``, ``readline``, ``curses``, ``_posixsubprocess``: not found;
* ``msvcrt``: a stand-in whose ``locking`` takes an exclusive ``flock`` of the file (the
  project locks one byte at one offset: the same exclusion; Windows' mandatory byte-range
  locks, which refuse even reads of the locked byte, are not simulated).

**What cannot be simulated** (the machine is still Linux underneath): paths (``pathlib`` and
``os.path`` are POSIX's: ``/`` separators, case-sensitive names, no drive letters, no reserved
names), permission bits (``chmod`` works as on Linux; Windows keeps only read-only), symbolic
links without privileges, file locking and deletion of open files (Windows refuses to remove
or rename a file another process holds open), the environment's case-insensitive names, the
console's Ctrl-C delivery, exit codes of killed processes, and the standard library's own
behaviour (``tempfile``, ``shutil``, ``pathlib`` run Linux's code). ``leaddb.platforms.
docker_mount_source`` keeps its POSIX form: the engine here is Linux's and cannot mount a
``C:\\`` path (its Windows form is unit-tested with ``windows=True``). A script run as
``python file.py`` (``benchmarks/peers.py``) is ``__main__`` and not covered; the static check
(``tests/test_windows_names.py``) covers every file.

This file is the simulator, not the project: it runs only on Linux and is exempt from that
static check.
"""

from __future__ import annotations

import builtins
import enum
import errno
import importlib._bootstrap as _bootstrap
import importlib.util
import os
import select
import shutil
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

ENV = "LEADDB_TEST_WINDOWS_SEMANTICS"
HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent.parent
TESTS = PROJECT / "tests"
PROJECT_PACKAGES = {"leaddb", "tasks", "noxfile", "benchmarks"}

# Every public name of ``os`` on Windows, CPython 3.11 (``nt`` plus os.py's own); private names
# (``_exit``...) pass. Anything else Linux's ``os`` has is POSIX-only.
WINDOWS_OS = frozenset(
    """
    DirEntry F_OK GenericAlias Mapping MutableMapping O_APPEND O_BINARY O_CREAT O_EXCL O_NOINHERIT
    O_RANDOM O_RDONLY O_RDWR O_SEQUENTIAL O_SHORT_LIVED O_TEMPORARY O_TEXT O_TRUNC O_WRONLY
    P_DETACH P_NOWAIT P_NOWAITO P_OVERLAY P_WAIT PathLike R_OK SEEK_CUR SEEK_END SEEK_SET TMP_MAX
    W_OK X_OK abc abort access add_dll_directory altsep chdir chmod close closerange cpu_count
    curdir defpath device_encoding devnull dup dup2 environ error execl execle execlp execlpe
    execv execve execvp execvpe extsep fdopen fsdecode fsencode fspath fstat fsync ftruncate
    get_exec_path get_handle_inheritable get_inheritable get_terminal_size getcwd getcwdb getenv
    getlogin getpid getppid isatty kill linesep link listdir lseek lstat makedirs mkdir name open
    pardir path pathsep pipe popen putenv read readlink remove removedirs rename renames replace
    rmdir scandir sep set_handle_inheritable set_inheritable spawnl spawnle spawnv spawnve st
    startfile stat stat_result statvfs_result strerror supports_bytes_environ supports_dir_fd
    supports_effective_ids supports_fd supports_follow_symlinks symlink sys system terminal_size
    times times_result truncate umask uname_result unlink unsetenv urandom utime waitpid
    waitstatus_to_exitcode walk write
    """.split()
)
# Every public name of ``signal`` on Windows, CPython 3.11.
WINDOWS_SIGNAL = frozenset(
    """
    CTRL_BREAK_EVENT CTRL_C_EVENT Handlers NSIG SIGABRT SIGBREAK SIGFPE SIGILL SIGINT SIGSEGV
    SIGTERM SIG_DFL SIG_IGN Signals default_int_handler getsignal raise_signal set_wakeup_fd
    signal strsignal valid_signals
    """.split()
)
# Names of other modules that Windows lacks (the rest of each module is there).
POSIX_ONLY_NAMES = {
    "shutil": frozenset({"chown"}),
    "time": frozenset({"tzset"}),
    "select": frozenset({"poll", "epoll", "kqueue", "kevent", "devpoll", "PIPE_BUF"}),
}
POSIX_ONLY_PREFIXES = {"select": ("POLL", "EPOLL", "KQ_")}
# Modules Windows' CPython does not have at all.
UNIMPORTABLE = frozenset(
    "fcntl pwd grp resource termios tty pty posix crypt spwd syslog nis readline curses _curses "
    "_posixsubprocess _posixshmem".split()
)
# subprocess arguments Windows refuses, and those it ignores (Popen's code there)
REFUSED_ARGUMENTS = ("preexec_fn", "user", "group", "extra_groups")
IGNORED_ARGUMENTS = ("start_new_session", "process_group", "restore_signals", "umask")
WINDOWS_ONLY_ARGUMENTS = ("creationflags", "startupinfo")  # honoured there; Linux's Popen refuses them
CTRL_C_EVENT, CTRL_BREAK_EVENT, SIGBREAK = 0, 1, 21


def posix_only(module: str, name: str) -> bool:
    """Whether ``module.name`` is missing on Windows (for the static check too)."""
    if name.startswith("_"):
        return False
    if module == "os":
        return name not in WINDOWS_OS
    if module == "signal":
        return name not in WINDOWS_SIGNAL
    return name in POSIX_ONLY_NAMES.get(module, ()) or name.startswith(
        POSIX_ONLY_PREFIXES.get(module, ("\0",))
    )


class _View(types.ModuleType):
    """A module as Windows has it: the real one's attributes, less its POSIX-only names, plus
    ``overrides``. Writes go to the real module (a test's monkeypatch reaches the library), but
    an overridden or POSIX-only name stays the view's own. Every name is a data descriptor of
    the view's class (:func:`_view`), so pytest's monkeypatch reads the old value through the
    view and puts it back through the view."""

    def __init__(self, real: types.ModuleType, overrides: dict) -> None:
        super().__init__(real.__name__, real.__doc__)
        for name in ("__package__", "__loader__", "__spec__"):  # the real module's, through __getattr__
            del vars(self)[name]
        vars(self)["_view_real"] = real
        vars(self)["_view_own"] = dict(overrides)

    def _view_get(self, name: str):
        own, real = vars(self)["_view_own"], vars(self)["_view_real"]
        if name in own:
            return own[name]
        if posix_only(real.__name__, name):
            raise AttributeError(
                f"module {real.__name__!r} has no attribute {name!r} (Windows semantics: POSIX only)"
            )
        return getattr(real, name)

    def __getattr__(self, name: str):  # a name the real module gained after the view was made
        if name.startswith("__"):
            return getattr(vars(self)["_view_real"], name)
        return self._view_get(name)

    def __setattr__(self, name: str, value) -> None:
        own, real = vars(self)["_view_own"], vars(self)["_view_real"]
        if name in own or posix_only(real.__name__, name) or name in _OVERRIDDEN.get(real.__name__, ()):
            own[name] = value  # e.g. a test faking os.geteuid on "Windows", or os.name
        else:
            setattr(real, name, value)

    def __delattr__(self, name: str) -> None:
        own = vars(self)["_view_own"]
        if name in own:
            del own[name]
        else:
            delattr(vars(self)["_view_real"], name)

    def __dir__(self):
        own, real = vars(self)["_view_own"], vars(self)["_view_real"]
        return sorted(set(own) | {n for n in dir(real) if not posix_only(real.__name__, n)})


class _Name:
    """One attribute of a view, as a data descriptor of its class."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, view, owner=None):
        return self if view is None else view._view_get(self.name)

    def __set__(self, view, value) -> None:
        _View.__setattr__(view, self.name, value)

    def __delete__(self, view) -> None:
        _View.__delattr__(view, self.name)


_OVERRIDDEN: dict[str, frozenset] = {}


def _view(real: types.ModuleType, overrides: dict) -> _View:
    _OVERRIDDEN[real.__name__] = frozenset(overrides)
    names = {n for n in (*dir(real), *overrides) if not n.startswith("__") and not n.startswith("_view_")}
    cls = type(f"{real.__name__}_view", (_View,), {n: _Name(n) for n in names})
    return cls(real, overrides)


# -- os ----------------------------------------------------------------------------------------


def _kill(pid: int, sig: int) -> None:
    """Windows' ``os.kill``: 0 and 1 are CTRL_C_EVENT and CTRL_BREAK_EVENT, sent to a console
    process group (not simulated: never a liveness probe there); any other number ends the
    process at once, no handler running (TerminateProcess)."""
    if sig in (CTRL_C_EVENT, CTRL_BREAK_EVENT):
        raise NotImplementedError(
            f"os.kill({pid}, {sig}): on Windows signal {sig} is "
            f"{'CTRL_C_EVENT' if sig == 0 else 'CTRL_BREAK_EVENT'}, a console event to a process group, "
            "not a probe of whether the process lives (Windows semantics)"
        )
    os.kill(pid, signal.SIGKILL)


# -- signal ------------------------------------------------------------------------------------

_SIGNALS = enum.IntEnum(
    "Signals",
    {
        name: int(getattr(signal, name))
        for name in ("SIGABRT", "SIGFPE", "SIGILL", "SIGINT", "SIGSEGV", "SIGTERM")
    }
    | {"SIGBREAK": SIGBREAK},
)


def _signal_overrides() -> dict:
    members = {name: member for name, member in _SIGNALS.__members__.items()}
    return {
        **members,
        "Signals": _SIGNALS,
        "CTRL_C_EVENT": CTRL_C_EVENT,
        "CTRL_BREAK_EVENT": CTRL_BREAK_EVENT,
        "valid_signals": lambda: set(_SIGNALS),
    }


# -- subprocess --------------------------------------------------------------------------------


def _windows_arguments(kwargs: dict) -> dict:
    for name in REFUSED_ARGUMENTS:
        if kwargs.get(name) is not None:
            if name == "preexec_fn":
                raise ValueError("preexec_fn is not supported on Windows platforms")
            raise ValueError(f"The '{name}' parameter is not supported on the current platform")
    if kwargs.get("pass_fds"):
        raise AssertionError("pass_fds not supported on Windows.")
    return {k: v for k, v in kwargs.items() if k not in IGNORED_ARGUMENTS + WINDOWS_ONLY_ARGUMENTS}


class _Popen(subprocess.Popen):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **_windows_arguments(kwargs))

    def send_signal(self, sig: int) -> None:
        """Windows: SIGTERM is terminate(); the CTRL events go to a console process group (not
        simulated); anything else is refused."""
        if sig == signal.SIGTERM:
            self.terminate()
        elif sig in (CTRL_C_EVENT, CTRL_BREAK_EVENT):
            raise NotImplementedError("console control events are not simulated (Windows semantics)")
        else:
            raise ValueError(f"Unsupported signal: {sig}")

    def terminate(self) -> None:
        self.kill()  # TerminateProcess: the child's handlers never run

    def kill(self) -> None:
        super().send_signal(signal.SIGKILL)


def _wrapped(function):
    def call(*args, **kwargs):
        return function(*args, **_windows_arguments(kwargs))

    call.__name__ = call.__qualname__ = function.__name__
    call.__doc__ = function.__doc__
    return call


def _subprocess_overrides() -> dict:
    overrides = {
        name: _wrapped(getattr(subprocess, name)) for name in ("run", "call", "check_call", "check_output")
    }
    overrides["Popen"] = _Popen
    # Windows' creation flags exist there (and are ignored here: Linux's Popen refuses them)
    overrides |= {
        "CREATE_NEW_CONSOLE": 0x10,
        "CREATE_NEW_PROCESS_GROUP": 0x200,
        "CREATE_NO_WINDOW": 0x08000000,
        "DETACHED_PROCESS": 0x8,
    }
    return overrides


# -- msvcrt (a stand-in) -----------------------------------------------------------------------


def _fake_msvcrt() -> types.ModuleType:
    import fcntl  # the simulator's own: this file only ever runs on Linux

    module = types.ModuleType("msvcrt", "Windows' msvcrt.locking, simulated with flock (windows_view.py)")
    module.LK_UNLCK, module.LK_LOCK, module.LK_NBLCK, module.LK_RLCK, module.LK_NBRLCK = 0, 1, 2, 3, 4

    def locking(fd: int, mode: int, nbytes: int) -> None:
        if mode == module.LK_UNLCK:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return
        attempts = 10 if mode in (module.LK_LOCK, module.LK_RLCK) else 1  # LK_LOCK: 10 tries, 1 s apart
        for attempt in range(attempts):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if attempt < attempts - 1:
                    time.sleep(1)
        code = errno.EACCES if attempts == 1 else errno.EDEADLK
        raise OSError(code, os.strerror(code))

    module.locking = locking
    return module


# -- the import hook ---------------------------------------------------------------------------

_VIEWS: dict[str, types.ModuleType] = {}
_real_import = builtins.__import__


def _import(name, globals=None, locals=None, fromlist=(), level=0):  # noqa: A002 - __import__'s own signature
    if level == 0:
        top = name.partition(".")[0]
        if top in UNIMPORTABLE:
            raise ModuleNotFoundError(f"No module named {top!r} (Windows semantics)", name=top)
        if name == "msvcrt":
            return _VIEWS["msvcrt"]
        module = _real_import(name, globals, locals, fromlist, level)
        if top in _VIEWS and (not fromlist or name == top):
            return _VIEWS[top]
        return module
    return _real_import(name, globals, locals, fromlist, level)


VIEW_BUILTINS = dict(vars(builtins))
VIEW_BUILTINS["__import__"] = _import


def is_project_module(name: str, origin: str | None) -> bool:
    if name.partition(".")[0] in PROJECT_PACKAGES:
        return True
    if not origin or not origin.endswith(".py"):
        return False
    path = Path(origin).resolve()
    return path.is_relative_to(TESTS) and not path.is_relative_to(HERE)


class _AfterExec:
    """A loader that runs ``after(module)`` once the real loader has executed it."""

    def __init__(self, loader, after) -> None:
        self._loader, self._after = loader, after

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        self._after(module)

    def __getattr__(self, name):
        return getattr(self._loader, name)


def _linux_engine_mounts(platforms: types.ModuleType) -> None:
    """The one switch kept on POSIX: the Docker engine here is Linux's, and mounts no ``C:\\``
    path (``docker_mount_source``'s Windows form is unit-tested with ``windows=True``)."""
    platforms.docker_mount_source.__kwdefaults__["windows"] = False


_real_module_from_spec = _bootstrap.module_from_spec


def _module_from_spec(spec):
    module = _real_module_from_spec(spec)
    if is_project_module(spec.name, spec.origin):
        vars(module)["__builtins__"] = VIEW_BUILTINS  # before its code runs: every import in it
        if spec.name == "leaddb.platforms" and spec.loader is not None:
            spec.loader = _AfterExec(spec.loader, _linux_engine_mounts)
    return module


def installed() -> bool:
    return _bootstrap.module_from_spec is _module_from_spec


def _build_views() -> None:
    if not _VIEWS:
        _VIEWS.update(
            os=_view(os, {"name": "nt", "kill": _kill}),
            signal=_view(signal, _signal_overrides()),
            sys=_view(sys, {"platform": "win32"}),
            subprocess=_view(subprocess, _subprocess_overrides()),
            shutil=_view(shutil, {}),
            time=_view(time, {}),
            select=_view(select, {}),
            msvcrt=_fake_msvcrt(),
        )


def install() -> None:
    """Hand every project module imported from now on the Windows view (idempotent)."""
    if installed():
        return
    if sys.platform == "win32":  # the real thing: nothing to simulate
        return
    _build_views()
    _bootstrap.module_from_spec = _module_from_spec  # the import system's own step
    importlib.util.module_from_spec = _module_from_spec  # importers that call it themselves


def load_as_project_module(name: str, path: Path) -> types.ModuleType:
    """Execute the file at ``path`` as a project module would run under the view, without
    installing it for anything else (the view's own tests)."""
    _build_views()
    spec = importlib.util.spec_from_file_location(name, path)
    module = types.ModuleType(name)
    module.__file__ = str(path)
    vars(module)["__builtins__"] = VIEW_BUILTINS
    spec.loader.exec_module(module)
    return module
