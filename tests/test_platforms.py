"""The platform differences, each in one place (``leaddb.platforms``), exercised here on Linux
by simulating the Windows branch."""

from __future__ import annotations

import errno
import subprocess
from pathlib import Path

import pytest

from leaddb import platforms
from leaddb.errors import BackendError


def _sharing_violation() -> PermissionError:
    exc = PermissionError(errno.EACCES, "The process cannot access the file because it is being used")
    exc.winerror = 32  # ERROR_SHARING_VIOLATION
    return exc


def test_windows_removal_retries_while_a_file_is_still_open(tmp_path):
    attempts, waits = [], []

    def remove(path: Path) -> None:
        attempts.append(path)
        if len(attempts) < 3:
            raise _sharing_violation()

    platforms.remove_tree(tmp_path / "cluster", windows=True, remove=remove, sleep=waits.append)
    assert len(attempts) == 3
    assert waits == [0.02, 0.04]


def test_windows_removal_gives_up_after_a_bounded_time(tmp_path):
    waits = []

    def remove(path: Path) -> None:
        raise _sharing_violation()

    with pytest.raises(PermissionError):
        platforms.remove_tree(tmp_path, windows=True, remove=remove, sleep=waits.append)
    assert len(waits) == 19 and max(waits) == 0.5
    assert 3 < sum(waits) < 10


def test_windows_rename_retries_while_a_file_is_still_open(tmp_path):
    """A cluster is buried (renamed to a tombstone) right after its server stopped."""
    waits, moves = [], []

    def move(source, target):
        moves.append((source, target))
        if len(moves) < 3:
            raise PermissionError(13, "The process cannot access the file", str(source))

    assert platforms.rename(
        tmp_path / "cluster", tmp_path / "tomb", windows=True, move=move, sleep=waits.append
    )
    assert moves == [(tmp_path / "cluster", tmp_path / "tomb")] * 3
    assert waits == [0.02, 0.04]


def test_rename_of_a_missing_directory_says_so(tmp_path):
    assert platforms.rename(tmp_path / "never-made", tmp_path / "tomb") is False
    (tmp_path / "made").mkdir()
    assert platforms.rename(tmp_path / "made", tmp_path / "tomb") is True
    assert (tmp_path / "tomb").is_dir()


def test_posix_removal_does_not_retry_a_permission_error(tmp_path):
    calls = []

    def remove(path: Path) -> None:
        calls.append(path)
        raise PermissionError(errno.EACCES, "Permission denied")

    with pytest.raises(PermissionError):
        platforms.remove_tree(tmp_path, windows=False, remove=remove, sleep=lambda s: None)
    assert len(calls) == 1


def test_removal_of_a_missing_tree_is_done(tmp_path):
    platforms.remove_tree(tmp_path / "never-made")  # the real rmtree: nothing to do, no error
    (tmp_path / "made" / "deep").mkdir(parents=True)
    platforms.remove_tree(tmp_path / "made")
    assert not (tmp_path / "made").exists()


@pytest.mark.parametrize("windows", [False, True], ids=["posix", "windows"])
def test_a_program_that_leaves_a_server_behind_never_gets_pipes(tmp_path, windows):
    """pg_ctl start: the server inherits its stdout/stderr; pipes would never reach EOF."""
    io = platforms.background_start_io(tmp_path / "out.txt", windows=windows)
    try:
        assert io["stdin"] is subprocess.DEVNULL
        assert io["stderr"] is subprocess.STDOUT
        assert io["stdout"] not in (subprocess.PIPE, None)
        assert Path(io["stdout"].name) == tmp_path / "out.txt"
        assert ("creationflags" in io) is windows
    finally:
        io["stdout"].close()


def test_the_io_file_receives_the_programs_output(tmp_path):
    import sys

    io = platforms.background_start_io(tmp_path / "out.txt")
    try:
        subprocess.run(
            [sys.executable, "-c", "import sys; print('said'); print('oops', file=sys.stderr)"], **io
        )
    finally:
        io["stdout"].close()
    assert (tmp_path / "out.txt").read_text(encoding="utf-8").split() == ["said", "oops"]


def test_windows_bind_mount_keeps_the_drive_letter_and_never_resolves_to_unc():
    source = platforms.docker_mount_source(Path("Z:/work/leadgen/api/db/migrations"), windows=True)
    assert source == "Z:\\work\\leadgen\\api\\db\\migrations"


def test_posix_bind_mount_is_absolute(tmp_path):
    assert platforms.docker_mount_source(tmp_path / "a" / ".." / "b", windows=False) == str(tmp_path / "b")


def test_sharing_violation_is_a_windows_only_condition():
    assert platforms.is_sharing_violation(_sharing_violation(), windows=True)
    assert not platforms.is_sharing_violation(_sharing_violation(), windows=False)
    assert not platforms.is_sharing_violation(FileExistsError(errno.EEXIST, "exists"), windows=True)


def test_executable_names():
    assert platforms.executable("pg_ctl", windows=True) == "pg_ctl.exe"
    assert platforms.executable("pg_ctl", windows=False) == "pg_ctl"


@pytest.mark.parametrize("windows", [False, True], ids=["posix", "windows"])
def test_bind_probe_tells_a_listener_from_a_free_port(windows):
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert isinstance(platforms.bind_probe("127.0.0.1", port, windows=windows), OSError)
    assert platforms.bind_probe("127.0.0.1", port, windows=windows) is None


def test_docker_default_host_is_the_named_pipe_on_windows():
    assert platforms.docker_default_host(windows=True) == "npipe:////./pipe/docker_engine"
    assert platforms.docker_default_host(windows=False) == "unix:///var/run/docker.sock"


def test_without_pywin32_on_windows_the_docker_error_says_to_install_it(monkeypatch):
    """What docker-py really raises there: its named-pipe adapter needs pywin32, and without it
    ``APIClient`` raises ``DockerException('Install pypiwin32 package ...')`` from a NameError
    (never an ImportError). Reproduced with docker-py itself: this machine has no pywin32 either."""
    import docker.api.client

    from leaddb.backends.docker import engine

    assert not hasattr(docker.api.client, "NpipeHTTPAdapter")  # no pywin32 here
    monkeypatch.setattr(docker.api.client, "IS_WINDOWS_PLATFORM", True)
    monkeypatch.setattr(platforms, "IS_WINDOWS", True)
    monkeypatch.setenv("DOCKER_HOST", platforms.docker_default_host(windows=True))
    with pytest.raises(BackendError) as refused:
        engine.connect()
    assert str(refused.value).startswith("no Docker engine answered at npipe:////./pipe/docker_engine: ")
    assert refused.value.hint == "install pywin32 (pip install -e . installs it on Windows), then retry"
    answers, where = engine.answers()
    assert not answers
    assert where == (
        "docker-py cannot reach npipe:////./pipe/docker_engine without pywin32: install pywin32 "
        "(pip install -e . installs it on Windows), then retry"
    )


def test_users_and_ownership_are_posix_only_and_answer_plainly_on_windows():
    assert platforms.running_as_root(windows=True) is False
    assert platforms.user_ids("postgres", windows=True) is None
    assert platforms.describe_owner(2**31 - 2) == f"uid {2**31 - 2}"  # no such user, or no pwd at all


@pytest.mark.posix_only("the user database (pwd)")
def test_a_user_that_does_not_exist_has_no_ids():
    assert platforms.user_ids("no-such-user-leaddb", windows=False) is None


def noxfile_with_fake_nox(monkeypatch, session_class):
    """noxfile.py, loaded with a stand-in for nox (its sessions plain functions of a session)."""
    import importlib.util
    import sys
    import types

    fake = types.ModuleType("nox")
    fake.options = types.SimpleNamespace()
    fake.session = lambda function: function
    fake.Session = session_class
    monkeypatch.setitem(sys.modules, "nox", fake)
    spec = importlib.util.spec_from_file_location(
        "noxfile_under_test", Path(__file__).parent.parent / "noxfile.py"
    )
    noxfile = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(noxfile)
    return noxfile


def test_nox_mutation_on_windows_says_where_mutmut_runs_and_fails(monkeypatch):
    """mutmut refuses Windows; the session says so, with the next step, before installing anything."""
    import types

    class Stop(Exception):
        pass

    class Session:
        def error(self, message):
            raise Stop(message)

        def install(self, *args):
            pytest.fail("installed the mutation lock on Windows")

    noxfile = noxfile_with_fake_nox(monkeypatch, Session)
    monkeypatch.setattr(noxfile, "sys", types.SimpleNamespace(platform="win32"))
    with pytest.raises(Stop) as stopped:
        noxfile.mutation(Session())
    assert str(stopped.value).startswith("mutmut does not run on Windows")
    assert "Next step: run this session in WSL" in str(stopped.value)


@pytest.mark.parametrize(
    "posargs, workers",
    [
        ([], True),  # the README's command: the suite in worker processes
        (["-q", "-m", "not posix_only"], True),  # .ci/run's Windows pass: its own arguments, workers too
        (["tests/test_x.py", "-n", "0"], False),  # in one process
        (["-n3"], False),
        (["--numprocesses=2"], False),
        (["-p", "no:xdist"], False),
    ],
)
def test_nox_tests_runs_the_suite_in_workers_unless_the_arguments_say_how(monkeypatch, posargs, workers):
    """`nox -s tests` adds pytest-xdist's workers (-n auto, work stealing) to whatever it runs,
    unless the arguments already choose: `-n 0` runs the suite in one process."""
    ran = []

    class Session:
        def __init__(self):
            self.posargs = posargs

        def install(self, *args):
            pass

        def run_install(self, *args, **kwargs):
            return ""

        def run(self, *args, **kwargs):
            ran.append(list(args))

    noxfile = noxfile_with_fake_nox(monkeypatch, Session)
    monkeypatch.setattr(noxfile, "_stop_on_signals", lambda: None)
    noxfile.tests(Session())
    (pytest_run,) = [args for args in ran if args[:3] == ["python", "-m", "pytest"]]
    assert pytest_run[3 : 3 + max(len(posargs), 1)] == (posargs or ["-q"])  # theirs first, as given
    added = pytest_run[3 + max(len(posargs), 1) :]
    assert added == (["-n", "auto", "--maxprocesses", "4", "--dist", "worksteal"] if workers else [])


def test_the_windows_guide_shows_the_engine_address_the_auto_choice_prints(monkeypatch):
    """docs/windows.md quotes the first line of the main job on Docker Desktop: the named pipe the
    user knows, not docker-py's internal base URL (http+docker://localnpipe)."""
    import sys
    import types

    from leaddb import backends

    class Client:
        api = types.SimpleNamespace(base_url="http+docker://localnpipe")

        def ping(self):
            return True

    monkeypatch.setitem(sys.modules, "docker", types.SimpleNamespace(from_env=lambda **kwargs: Client()))
    monkeypatch.setenv("DOCKER_HOST", platforms.docker_default_host(windows=True))
    said = []
    backends.select("auto", Path(__file__).parent.parent, say=said.append)
    guide = (Path(__file__).parent.parent / "docs" / "windows.md").read_text(encoding="utf-8")
    assert said == ["backend: docker (auto: engine at npipe:////./pipe/docker_engine)"]
    assert f"You should see, first, `{said[0]}`" in guide
