"""The Windows view (tests/windows_semantics/windows_view.py), CI's pass under Windows semantics:
what it takes away from the project's modules, what it changes, and that a Windows-only mistake
planted in a library module fails under it and passes without it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from platform_marks import WINDOWS_SEMANTICS_DIR, WINDOWS_SEMANTICS_ENV, windows_view

PROJECT = Path(__file__).resolve().parent.parent


def run_viewed(tmp_path: Path, source: str):
    """``source`` executed as a project module under the view (nothing else is touched)."""
    path = tmp_path / "planted.py"
    path.write_text(textwrap.dedent(source), encoding="utf-8", newline="\n")
    return windows_view().load_as_project_module("planted", path)


@pytest.mark.parametrize(
    ("source", "error", "message"),
    [
        ("import signal\nKILL = signal.SIGKILL\n", AttributeError, "has no attribute 'SIGKILL'"),
        ("import signal\nHUP = signal.SIGHUP\n", AttributeError, "has no attribute 'SIGHUP'"),
        ("from signal import SIGQUIT\n", ImportError, "SIGQUIT"),
        ("import os\nROOT = os.geteuid() == 0\n", AttributeError, "has no attribute 'geteuid'"),
        ("import os as o\no.getuid()\n", AttributeError, "has no attribute 'getuid'"),
        ("import os\nos.fork\n", AttributeError, "'fork'"),
        ("import os\nos.setsid\n", AttributeError, "'setsid'"),
        ("import os\nos.killpg\n", AttributeError, "'killpg'"),
        ("import os\nos.chown\n", AttributeError, "'chown'"),
        ("import os\nos.lchown\n", AttributeError, "'lchown'"),
        ("import os\nFLAGS = os.O_RDONLY | os.O_NOFOLLOW\n", AttributeError, "'O_NOFOLLOW'"),
        ("import fcntl\n", ModuleNotFoundError, "No module named 'fcntl'"),
        ("def f():\n    import pwd\nf()\n", ModuleNotFoundError, "No module named 'pwd'"),
        ("from grp import getgrnam\n", ModuleNotFoundError, "No module named 'grp'"),
        ("import resource\n", ModuleNotFoundError, "No module named 'resource'"),
        ("import shutil\nshutil.chown\n", AttributeError, "'chown'"),
        (
            "import subprocess, sys\nsubprocess.run([sys.executable, '-c', ''], preexec_fn=print)\n",
            ValueError,
            "preexec_fn is not supported on Windows",
        ),
        (
            "import subprocess, sys\nsubprocess.run([sys.executable, '-c', ''], user='nobody')\n",
            ValueError,
            "'user' parameter is not supported",
        ),
        ("import os\nos.kill(os.getpid(), 0)\n", NotImplementedError, "CTRL_C_EVENT"),
    ],
)
def test_what_windows_lacks_is_gone(tmp_path, source, error, message):
    with pytest.raises(error, match=message):
        run_viewed(tmp_path, source)


def test_what_windows_has_is_there_and_the_platform_says_windows(tmp_path):
    module = run_viewed(
        tmp_path,
        """
        import os, signal, subprocess, sys
        from os import path, getpid
        import os.path
        NAME, PLATFORM = os.name, sys.platform
        NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
        ROOT_KNOWN = hasattr(os, "geteuid")
        SIGNALS = sorted(s.name for s in signal.valid_signals())
        TERM = signal.SIGTERM
        DONE = subprocess.run([sys.executable, "-c", ""], start_new_session=True, creationflags=0x08000000)
        JOINED = os.path.join("a", "b")
        """,
    )
    assert (module.NAME, module.PLATFORM) == ("nt", "win32")
    assert module.NOFOLLOW == 0 and module.ROOT_KNOWN is False
    assert module.SIGNALS == ["SIGABRT", "SIGBREAK", "SIGFPE", "SIGILL", "SIGINT", "SIGSEGV", "SIGTERM"]
    assert int(module.TERM) == 15
    assert module.DONE.returncode == 0  # start_new_session ignored, creationflags honoured there
    assert module.JOINED == "a/b"  # paths stay POSIX's: not simulated


def test_windows_popen_terminates_outright_and_refuses_other_signals(tmp_path):
    module = run_viewed(
        tmp_path,
        """
        import signal, subprocess, sys
        CHILD = "import signal, sys, time; signal.signal(15, lambda *a: sys.exit(3)); print(1); time.sleep(9)"
        def start():
            return subprocess.Popen([sys.executable, "-u", "-c", CHILD], stdout=subprocess.PIPE, text=True)
        """,
    )
    child = module.start()
    try:
        assert child.stdout.readline().strip() == "1"  # its SIGTERM handler is installed
        with pytest.raises(ValueError, match="Unsupported signal: 2"):
            child.send_signal(2)  # SIGINT: not on Windows
        child.terminate()  # TerminateProcess: its SIGTERM handler never runs
        assert child.wait(timeout=30) == -9  # as SIGKILL here (Windows: exit code 1)
    finally:
        child.kill()
        child.wait()


def test_the_msvcrt_stand_in_locks_exclusively_between_handles(tmp_path):
    msvcrt = run_viewed(tmp_path, "import msvcrt\n").msvcrt
    path = tmp_path / "task.lock"
    first, second = os.open(path, os.O_RDWR | os.O_CREAT), os.open(path, os.O_RDWR)
    try:
        msvcrt.locking(first, msvcrt.LK_NBLCK, 1)
        with pytest.raises(PermissionError):
            msvcrt.locking(second, msvcrt.LK_NBLCK, 1)
        msvcrt.locking(first, msvcrt.LK_UNLCK, 1)
        msvcrt.locking(second, msvcrt.LK_NBLCK, 1)
    finally:
        os.close(first)
        os.close(second)


def test_a_tests_monkeypatch_through_the_view_reaches_the_real_module(tmp_path, monkeypatch):
    module = run_viewed(tmp_path, "import os\n")
    monkeypatch.setattr(module.os, "replace", "patched")
    assert os.replace == "patched"  # what the library, through its own view, then sees too
    monkeypatch.undo()
    assert callable(os.replace)


def _copy_of_leaddb(tmp_path: Path, plant: str | None = None) -> Path:
    root = tmp_path / "checkout"
    shutil.copytree(PROJECT / "leaddb", root / "leaddb", ignore=shutil.ignore_patterns("__pycache__"))
    if plant:
        statedir = root / "leaddb" / "statedir.py"
        statedir.write_text(statedir.read_text(encoding="utf-8") + plant, encoding="utf-8", newline="\n")
    return root


CHILD = (
    "from leaddb import locks, platforms, statedir\n"
    "print(platforms.IS_WINDOWS, type(locks._LOCK).__name__, platforms.running_as_root())\n"
    "print(getattr(statedir, 'planted', lambda: 'no plant')())\n"
)


def _run_child(root: Path, *, windows: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", WINDOWS_SEMANTICS_ENV)}
    if windows:
        env |= {WINDOWS_SEMANTICS_ENV: "1", "PYTHONPATH": str(WINDOWS_SEMANTICS_DIR)}
    return subprocess.run(
        [sys.executable, "-c", CHILD], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_process_that_runs_the_tests_is_under_the_view_exactly_when_the_run_asks():
    """CI's Windows pass runs its tests in pytest-xdist's workers: each must start under the view
    (the variable and PYTHONPATH inherited, sitecustomize installing it), or the pass proves nothing
    there. Asserted in whichever process runs this test; without the variable, no view anywhere."""
    from leaddb import platforms

    asked = os.environ.get(WINDOWS_SEMANTICS_ENV) == "1"
    assert ("windows_view" in sys.modules and windows_view().installed()) is asked
    if asked:
        assert platforms.IS_WINDOWS and not hasattr(os, "geteuid")  # the library's view, and this module's


def test_under_windows_semantics_the_library_takes_its_windows_branches(tmp_path):
    root = _copy_of_leaddb(tmp_path)
    viewed = _run_child(root, windows=True)
    assert viewed.returncode == 0, viewed.stderr
    assert viewed.stdout.splitlines() == ["True _MsvcrtLock False", "no plant"]


PLANT = "\n\ndef planted():\n    return os.geteuid() == 0\n"


def test_a_windows_only_mistake_in_a_library_module_fails_under_windows_semantics_only(tmp_path):
    root = _copy_of_leaddb(tmp_path, plant=PLANT)
    plain = _run_child(root, windows=False)
    assert plain.returncode == 0, plain.stderr  # on Linux the mistake passes unseen
    assert plain.stdout.splitlines()[1] in ("True", "False")
    viewed = _run_child(root, windows=True)
    assert viewed.returncode == 1
    assert (
        "AttributeError: module 'os' has no attribute 'geteuid' (Windows semantics: POSIX only)"
        in viewed.stderr
    )
