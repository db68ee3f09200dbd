"""The private state directory (issue 10, part 1): made 0700 (as root root:postgres 0710), checked
with lstat on every use, refused when it is another user's, a link, or looser than what we make;
files in it never followed through a link; the default location a per-user pointer to an
unpredictable directory on the RAM disk; nothing another user planted is ever touched.

The root-and-``nobody`` cases act as ``nobody`` in a forked child (``os.setuid``) and run only as
root (CI runs as root): they are skipped where the suite does not run as root, never in CI.
Owners, mode bits, links and ``fork`` are POSIX's: those tests are marked ``posix_only``.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import shutil
import stat
import sys
import tempfile
import traceback
from pathlib import Path

import pytest

from leaddb import backends, locks, nofollow, permissions, platforms, statedir
from leaddb.errors import BackendError

IS_ROOT = platforms.running_as_root()
# skipped where the suite does not run as root; in CI (as root) they run, and would fail if not root
needs_root = pytest.mark.skipif(
    not IS_ROOT and not os.environ.get("CI"), reason="acting as another user needs root"
)
posix_only = pytest.mark.posix_only("owners, mode bits and symbolic links are POSIX's")
as_another_user = pytest.mark.posix_only("acting as another user: fork, setuid, chown")


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    """A per-user directory of the test's own, on every platform: ``cache_home / "leaddb"``."""
    home = tmp_path / "cache"
    monkeypatch.setenv(statedir.CACHE_DIR_ENV, str(home / "leaddb"))
    monkeypatch.delenv(statedir.STATE_DIR_ENV, raising=False)
    yield home
    from leaddb.backends.local import remove_everything

    remove_everything(lambda line: None)  # the private dirs made by default, servers and the pristine


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@as_another_user
def as_nobody(action) -> None:
    """Run ``action()`` in a forked child that has become ``nobody`` (and group nogroup)."""
    import pwd

    nobody = pwd.getpwnam("nobody")
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            action()
            code = 0
        except BaseException:  # noqa: BLE001 - reported to the parent through the exit code
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the action as nobody failed (see stderr)"


# -- verify and ensure ---------------------------------------------------------------------


@posix_only
def test_a_missing_directory_is_made_exactly_as_wanted(tmp_path):
    mode, group = permissions.wanted_mode()
    made = permissions.ensure(tmp_path / "a" / "state", mode=mode, group=group, hint="h")
    assert mode_of(made) == mode
    assert os.lstat(made).st_uid == os.geteuid()
    if IS_ROOT:  # the server (postgres) must traverse it to reach its cluster, and only it
        import pwd

        assert (mode, os.lstat(made).st_gid) == (0o710, pwd.getpwnam("postgres").pw_gid)
    else:
        assert mode == 0o700


@posix_only
def test_a_link_is_refused_and_never_followed(tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(BackendError) as refused:
        permissions.ensure(tmp_path / "link", hint="the next step")
    message = str(refused.value)
    assert f"the private directory {tmp_path / 'link'} is a symbolic link (it is never followed)" in message
    assert "next step: the next step" in message
    assert mode_of(real) == 0o700  # its target was not brought to our mode either


@posix_only
@pytest.mark.parametrize("loose", [0o770, 0o702, 0o777, 0o720, 0o730, 0o703])
def test_a_directory_others_can_write_to_is_refused(tmp_path, loose):
    mode, group = permissions.wanted_mode()
    path = tmp_path / "state"
    path.mkdir()
    path.chmod(loose)
    if group is not None:
        os.chown(path, -1, group)
    with pytest.raises(BackendError, match=rf"{path} has mode {loose:04o}: writable by the group or other"):
        permissions.verify(path, mode=mode, group=group, hint="h")
    assert mode_of(path) == loose  # refused, not repaired: anything in it may be planted


@posix_only
@pytest.mark.parametrize("readable", [0o755, 0o711, 0o750, 0o701, 0o744])
def test_a_directory_of_ours_that_only_others_can_read_is_tightened(tmp_path, readable):
    """`mkdir -p` makes 0755: nobody else could have put anything in it, so it is ours to use,
    once closed to the others."""
    mode, group = permissions.wanted_mode()
    path = tmp_path / "state"
    path.mkdir()
    path.chmod(readable)
    permissions.verify(path, mode=mode, group=group, hint="h")
    assert mode_of(path) == mode
    if group is not None:
        assert path.stat().st_gid == group


@posix_only
def test_a_tighter_directory_of_ours_is_brought_to_our_mode(tmp_path):
    mode, group = permissions.wanted_mode()
    path = tmp_path / "state"
    path.mkdir()
    path.chmod(0o700)
    permissions.verify(path, mode=mode, group=group, hint="h")
    assert mode_of(path) == mode


@as_another_user
@needs_root
def test_as_root_group_search_for_another_group_is_given_to_the_servers_group(tmp_path):
    mode, group = permissions.wanted_mode()
    path = tmp_path / "state"
    path.mkdir()
    os.chown(path, 0, 0)
    path.chmod(0o710)
    permissions.verify(path, mode=mode, group=group, hint="h")
    assert path.stat().st_gid == group and mode_of(path) == 0o710


@as_another_user
@needs_root
def test_another_users_directory_is_refused(tmp_path):
    path = tmp_path / "state"
    path.mkdir(mode=0o700)
    os.chown(path, 65534, 65534)
    with pytest.raises(BackendError, match=r"belongs to nobody \(uid 65534\), not to you \(root \(uid 0\)\)"):
        permissions.ensure(path, hint="h")


# -- files inside -----------------------------------------------------------------------------


@posix_only
def test_state_files_are_never_read_or_written_through_a_link(tmp_path):
    precious = tmp_path / "precious.txt"
    precious.write_text("not yours\n", encoding="utf-8", newline="\n")
    (tmp_path / "state.json").symlink_to(precious)
    with pytest.raises(OSError):
        nofollow.read_utf8(tmp_path / "state.json")
    with pytest.raises(OSError):
        nofollow.append_utf8(tmp_path / "state.json", "more\n")
    nofollow.replace_utf8(tmp_path / "state.json", '{"port": 1}')  # replaces the link itself
    assert not (tmp_path / "state.json").is_symlink()
    assert nofollow.read_utf8(tmp_path / "state.json") == '{"port": 1}'
    assert precious.read_text(encoding="utf-8") == "not yours\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


# -- the default location -----------------------------------------------------------------


@posix_only
def test_the_default_state_dir_is_an_unpredictable_private_dir_behind_a_per_user_pointer(
    cache_home, tmp_path
):
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    first = statedir.for_checkout(checkout)
    assert first.parent == statedir.scratch_root()
    assert first.name.startswith("leaddb-") and first.name != f"leaddb-{getpass.getuser()}"
    mode, _ = permissions.wanted_mode()
    assert mode_of(first) == mode
    user_dir = cache_home / "leaddb"
    assert mode_of(user_dir) == 0o700
    (pointer,) = user_dir.glob("state-*.json")
    assert mode_of(pointer) == 0o600
    assert json.loads(pointer.read_text(encoding="utf-8"))["state_dir"] == str(first)
    made = [first]
    try:
        assert statedir.for_checkout(checkout) == first  # the pointer is followed while valid
        other = tmp_path / "other"
        other.mkdir()
        made.append(statedir.for_checkout(other))
        assert made[-1] != first  # one per checkout
        # the RAM disk lost it (a reboot): a new one, with a new name
        shutil.rmtree(first)
        made.append(statedir.for_checkout(checkout))
        assert made[-1] != first and made[-1].is_dir()
    finally:
        for path in made:
            shutil.rmtree(path, ignore_errors=True)


@as_another_user
@needs_root
def test_a_pointer_whose_directory_another_user_recreated_is_re_pointed_and_that_directory_left_alone(
    cache_home, tmp_path
):
    """After a reboot anyone may create a directory of the name the pointer holds."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    first = statedir.for_checkout(checkout)
    shutil.rmtree(first)

    def plant():
        first.mkdir(mode=0o777)
        (first / "reset.lock").symlink_to("/etc/passwd")

    as_nobody(plant)
    made = [first]
    try:
        made.append(statedir.for_checkout(checkout))
        assert made[-1] != first
        assert os.lstat(made[-1]).st_uid == 0
        assert sorted(p.name for p in first.iterdir()) == ["reset.lock"]  # untouched
        assert os.lstat(first).st_uid == 65534
    finally:
        for path in made:
            shutil.rmtree(path, ignore_errors=True)


@posix_only
def test_a_directory_of_ours_behind_the_pointer_made_looser_is_refused(cache_home, tmp_path):
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    first = statedir.for_checkout(checkout)
    try:
        first.chmod(0o777)
        with pytest.raises(BackendError, match=rf"{first} has mode 0777: writable by the group or other"):
            statedir.for_checkout(checkout)
    finally:
        shutil.rmtree(first)


def test_two_processes_resolving_a_new_checkout_at_once_agree_on_one_directory(cache_home, tmp_path):
    """Their task lock lives in that directory: two directories would be two locks."""
    import subprocess

    checkout = tmp_path / "checkout"
    checkout.mkdir()
    key = hashlib.sha256(str(checkout.resolve()).encode()).hexdigest()[:16]
    code = (
        "import sys; from pathlib import Path; from leaddb import statedir;"
        "print(statedir.for_checkout(Path(sys.argv[1])))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with locks.waiting(statedir.user_dir() / f"state-{key}.lock"):  # all start before any makes it
        racers = [
            subprocess.Popen(
                [sys.executable, "-c", code, str(checkout)], stdout=subprocess.PIPE, text=True, env=env
            )
            for _ in range(3)
        ]
    answers = {r.communicate(timeout=120)[0].strip() for r in racers}
    try:
        assert all(r.returncode == 0 for r in racers)
        assert len(answers) == 1, answers
    finally:
        for answer in answers:
            if answer:
                shutil.rmtree(answer, ignore_errors=True)


def test_leaddb_cache_dir_places_the_user_directory_on_every_platform(tmp_path, monkeypatch):
    """platformdirs reads XDG_CACHE_HOME on Linux only; LEADDB_CACHE_DIR works everywhere."""
    import platformdirs

    monkeypatch.setattr(platformdirs, "user_cache_dir", lambda *a, **k: pytest.fail("platformdirs asked"))
    monkeypatch.setenv(statedir.CACHE_DIR_ENV, str(tmp_path / "mine" / "leaddb"))
    assert statedir.user_dir() == tmp_path / "mine" / "leaddb"
    assert (tmp_path / "mine" / "leaddb").is_dir()


def test_the_suite_keeps_its_per_user_directory_out_of_the_users_own():
    """conftest.py points LEADDB_CACHE_DIR at a directory of the run's own, inherited by the
    tasks the tests run as commands: no test writes into the user's real cache."""
    from platformdirs import user_cache_dir

    used = statedir.user_dir()
    assert used == Path(os.environ[statedir.CACHE_DIR_ENV])
    assert used.parent.name.startswith("leaddb-tests-cache-")
    assert used != Path(user_cache_dir(statedir.APP, appauthor=False))


# -- LEADDB_STATE_DIR through the tasks -----------------------------------------------------


@as_another_user
@needs_root
@pytest.mark.parametrize("how", ["another user's", "a link", "world-writable", "group-writable"])
def test_leaddb_state_dir_that_is_not_private_is_refused_by_every_task(project_dir, tmp_path, how):
    """One task as a user runs it (``python -m invoke``, a child); the others in this process over
    a copy of the project (tests/workspace.py): the same tasks.py, check and message."""
    from workspace import Workspace

    target = tmp_path / "state"
    if how == "another user's":
        target.mkdir(mode=0o700)
        os.chown(target, 65534, 65534)
        expected = "belongs to nobody (uid 65534), not to you"
    elif how == "a link":
        real = tmp_path / "real"
        real.mkdir(mode=0o700)
        target.symlink_to(real)
        expected = "is a symbolic link (it is never followed)"
    elif how == "world-writable":
        target.mkdir()
        target.chmod(0o777)
        expected = "has mode 0777: writable by the group or other users"
    else:
        target.mkdir()
        target.chmod(0o775)
        expected = "has mode 0775: writable by the group or other users"
    before = sorted(p.name for p in (real if how == "a link" else target).iterdir())
    ws = Workspace(
        project_dir,
        prefix="leaddb-sd-",
        env={statedir.STATE_DIR_ENV: str(target), "INVOKE_DB_BACKEND": "local"},
    )
    try:
        for task in ("db.reset", "db.down", "db.apply"):
            child = how == "another user's" and task == "db.reset"
            result = ws(task) if child else ws.in_process(task)
            assert result.returncode == 1, (task, result.stdout, result.stderr)
            assert "Traceback" not in result.stderr + result.stdout
            assert f"the private directory {target} {expected}" in result.stderr, result.stderr
            assert f"next step: point {statedir.STATE_DIR_ENV} at a directory of your own" in result.stderr
    finally:
        ws.remove()
    assert sorted(p.name for p in (real if how == "a link" else target).iterdir()) == before  # untouched


# -- what another user planted at the old predictable name (issue 10's case) ----------------


def old_predictable_dir(checkout: Path) -> Path:
    """Where the local backend used to keep a checkout's state: a name anyone could compute."""
    digest = hashlib.sha256(str(checkout.resolve()).encode()).hexdigest()[:10]
    return statedir.scratch_root() / f"leaddb-{getpass.getuser()}-{digest}"


@pytest.fixture
def checkout(project_dir, cache_home):
    root = Path(tempfile.mkdtemp(prefix="leaddb-sd-"))
    for name in ("tasks.py", "docker-compose.yml", "Technical-Architecture-Specification.md"):
        shutil.copy(project_dir / name, root / name)
    shutil.copytree(project_dir / "api", root / "api")
    root.chmod(0o755)
    planted = old_predictable_dir(root)
    env = {**os.environ, "INVOKE_DB_BACKEND": "local"}
    env.pop(statedir.STATE_DIR_ENV, None)

    def invoke(*args: str, extra: dict | None = None):
        import subprocess

        return subprocess.run(
            [sys.executable, "-m", "invoke", *args],
            cwd=root,
            env={**env, **(extra or {})},
            capture_output=True,
            text=True,
            timeout=300,
        )

    def here(*args: str, extra: dict | None = None):
        """The same task run in this process (tests/workspace.py)."""
        from workspace import in_process, load_tasks

        return in_process(root, load_tasks(root), {**env, **(extra or {})}, *args)

    invoke.root = root
    invoke.planted = planted
    invoke.in_process = here
    yield invoke
    here("db.down")  # a clean-up, not a proof
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(planted, ignore_errors=True)


def listing(path: Path) -> dict[str, tuple[int, int, bytes | str]]:
    """Every entry under ``path``: owner, mode and content (a link: its target)."""
    found = {}
    for entry in sorted(path.rglob("*")):
        st = os.lstat(entry)
        if entry.is_symlink():
            content: bytes | str = os.readlink(entry)
        elif entry.is_file():
            content = entry.read_bytes()
        else:
            content = ""
        found[str(entry.relative_to(path))] = (st.st_uid, stat.S_IMODE(st.st_mode), content)
    return found


@as_another_user
@needs_root
def test_roots_down_never_deletes_what_nobody_planted_at_the_old_predictable_name(checkout, tmp_path):
    precious = Path(tempfile.mkdtemp(prefix="leaddb-precious-"))  # root's own directory
    (precious / "keep.txt").write_text("root's\n", encoding="utf-8", newline="\n")
    planted = checkout.planted

    def plant():
        cluster = planted / "cluster"
        cluster.mkdir(parents=True)
        (cluster / ".leaddb-cluster").write_text("created by leaddb\n", encoding="utf-8", newline="\n")
        state = {"port": 5432, "socket_dir": str(precious), "password": "x", "dbname": "leadgen"}
        (cluster / "state.json").write_text(json.dumps(state), encoding="utf-8", newline="\n")

    try:
        as_nobody(plant)
        before = listing(planted)
        result = checkout("db.down")
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        assert "nothing to do" in result.stdout
        assert listing(planted) == before  # nobody's files untouched
        assert (precious / "keep.txt").read_text(encoding="utf-8") == "root's\n"
        # pointed at it explicitly, it is refused: it is not root's
        refused = checkout.in_process("db.down", extra={statedir.STATE_DIR_ENV: str(planted)})
        assert refused.returncode == 1
        assert f"the private directory {planted} belongs to nobody (uid 65534)" in refused.stderr
        assert listing(planted) == before
        assert (precious / "keep.txt").is_file()
    finally:
        shutil.rmtree(precious, ignore_errors=True)


@as_another_user
@needs_root
@pytest.mark.needs_pg_binaries
def test_roots_reset_never_follows_nobodys_link_at_the_old_lock_path(checkout, tmp_path):
    precious = tmp_path / "precious.txt"
    precious.write_text("root's file\n", encoding="utf-8", newline="\n")
    precious.chmod(0o600)
    planted = checkout.planted

    def plant():
        planted.mkdir(mode=0o777)
        (planted / "reset.lock").symlink_to(precious)

    as_nobody(plant)
    before = listing(planted)
    # by default root's state is elsewhere, in a private directory of its own
    result = checkout("db.reset")
    assert result.returncode == 0, result.stderr
    assert str(planted) not in result.stdout
    assert listing(planted) == before
    assert precious.read_text(encoding="utf-8") == "root's file\n"
    # pointed at it explicitly: refused before anything is written
    refused = checkout.in_process("db.reset", extra={statedir.STATE_DIR_ENV: str(planted)})
    assert refused.returncode == 1
    assert "Traceback" not in refused.stderr
    assert f"the private directory {planted} belongs to nobody (uid 65534)" in refused.stderr
    assert listing(planted) == before
    assert precious.read_text(encoding="utf-8") == "root's file\n"


@as_another_user
@needs_root
def test_the_docker_lock_never_follows_nobodys_link_in_the_shared_temp_dir(project_dir, cache_home, tmp_path):
    """The Docker backend's lock used to be a predictable name in the shared temp dir."""
    backend = backends.select("docker", project_dir, say=lambda *_: None)
    precious = tmp_path / "precious.txt"
    precious.write_text("root's file\n", encoding="utf-8", newline="\n")
    precious.chmod(0o600)
    old = Path(tempfile.gettempdir()) / f"leaddb-docker-{backend.spec.project}.lock"
    if not os.path.lexists(old):
        as_nobody(lambda: old.symlink_to(precious))
    try:
        lock = cache_home / "leaddb" / f"docker-{backend.spec.project}.lock"
        with backend.lock("db.reset"):
            assert lock.read_bytes() == f"{os.getpid()} db.reset".encode()  # the holder's record
        assert mode_of(lock.parent) == 0o700
        assert precious.read_text(encoding="utf-8") == "root's file\n"
    finally:
        if old.is_symlink() and os.readlink(old) == str(precious):
            old.unlink()


# -- pointers and what they name (issue 17, part 6) -----------------------------------------


@posix_only
def test_a_pointer_names_a_marked_directory_and_reads_back(cache_home, tmp_path):
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    made = statedir.for_checkout(checkout)
    record = {"checkout": str(checkout.resolve())}
    assert json.loads((made / statedir.STATE_MARKER).read_text(encoding="utf-8")) == record
    (pointer,) = statedir.pointers(statedir.user_dir())
    assert (pointer.checkout, pointer.state_dir, pointer.record) == (checkout.resolve(), made, record)
    assert pointer.lock == pointer.path.with_suffix(".lock")
    assert statedir.made_here(pointer, [pointer], lambda path: False)
    shared = statedir.shared_dir(create=True)
    assert statedir.shared_dir(create=False) == shared != made
    assert json.loads((shared / statedir.STATE_MARKER).read_text(encoding="utf-8")) == statedir.SHARED_RECORD
    assert {p.lock for p in statedir.pointers(statedir.user_dir())} == {pointer.lock, None}


@posix_only
def test_a_directory_whose_marker_names_another_checkout_is_neither_used_nor_removed(cache_home, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    mine = statedir.for_checkout(first)
    pointer = statedir.user_dir() / f"state-{statedir.checkout_key(second)}.json"
    pointer.write_text(
        json.dumps({"checkout": str(second.resolve()), "state_dir": str(mine)}),
        encoding="utf-8",
        newline="\n",
    )
    theirs = statedir.for_checkout(second)  # not first's: a directory of its own
    assert theirs != mine
    planted = statedir.Pointer(pointer, None, {"checkout": str(second.resolve())}, mine)
    assert not statedir.made_here(planted, [planted], lambda path: True)


@posix_only
def test_an_unmarked_directory_counts_only_in_the_old_layout_and_named_by_one_pointer(cache_home, tmp_path):
    old = Path(tempfile.mkdtemp(prefix="leaddb-", dir=tmp_path))
    other = Path(tempfile.mkdtemp(prefix="other-", dir=tmp_path))
    one = statedir.Pointer(tmp_path / "a.json", None, {"checkout": "/gone/a"}, old)
    two = statedir.Pointer(tmp_path / "b.json", None, {"checkout": "/gone/b"}, old)
    assert statedir.made_here(one, [one], lambda path: True)
    assert not statedir.made_here(one, [one], lambda path: False)  # not the old layout
    assert not statedir.made_here(one, [one, two], lambda path: True)  # another pointer names it
    renamed = statedir.Pointer(tmp_path / "c.json", None, {"checkout": "/gone/c"}, other)
    assert not statedir.made_here(renamed, [renamed], lambda path: True)  # not a name mkdtemp gave it
    old.chmod(0o777)
    assert not statedir.made_here(one, [one], lambda path: True)  # others could have written in it
    old.chmod(0o700)
    (old / statedir.STATE_MARKER).symlink_to(tmp_path / "elsewhere.json")
    assert not statedir.made_here(one, [one], lambda path: True)  # a marker that is a link


@posix_only
def test_a_checkout_is_gone_when_nothing_or_no_directory_is_at_its_path(tmp_path):
    assert not statedir.checkout_gone(tmp_path)
    assert statedir.checkout_gone(tmp_path / "missing")
    assert statedir.checkout_gone(tmp_path / "missing" / "deeper")
    (tmp_path / "file").write_text("x", encoding="utf-8", newline="\n")
    assert statedir.checkout_gone(tmp_path / "file")
    assert statedir.checkout_gone(tmp_path / "file" / "below")  # NotADirectoryError


@needs_root
@as_another_user
def test_a_checkout_behind_a_directory_it_cannot_search_is_not_taken_for_gone(tmp_path):
    closed = tmp_path / "closed"
    (closed / "checkout").mkdir(parents=True)
    closed.chmod(0o700)
    tmp_path.chmod(0o755)
    as_nobody(lambda: _not_gone(closed / "checkout"))


def _not_gone(checkout: Path) -> None:
    assert statedir.checkout_gone(checkout) is False, "a checkout it could not examine was taken for gone"
