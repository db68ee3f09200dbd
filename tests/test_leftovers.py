"""Nothing left running, nothing left on the RAM disk, when a checkout goes away (issue 17,
part 6). A checkout's local cluster lives in a state directory behind a per-user pointer; when
the checkout is deleted (a CI clone, a temporary checkout), the next local task of any checkout
stops that server and removes the state and the pointer, saying so in one line. Only what this
user's statedir made for that pointer is removed, and only the server working in that very data
directory is stopped. ``db.down --all`` removes everything of the user's; the pristine ``initdb``
output is one per user, shared by every checkout.

Each test has a per-user directory of its own (LEADDB_CACHE_DIR), so the pointers it sees are its
own. The tasks run as a user runs them, ``python -m invoke`` in a copy of the project, in the
end-to-end tests (a deleted checkout's server stopped by the next command; two checkouts building
the pristine at once; ``db.down --all``, removing and refusing); elsewhere the same task runs in
this process (``user.task``: the same tasks.py, arguments, sweep and messages, without a child's
start-up), which is all the sweep and the pristine see of the command.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pytest
from workspace import in_process, load_tasks

from leaddb import locks, platforms, statedir
from leaddb.backends import local

pytestmark = [pytest.mark.needs_pg_binaries]

PROJECT_FILES = ("tasks.py", "docker-compose.yml", "Technical-Architecture-Specification.md")


class User:
    """One user's per-user directory, and the checkouts made for the test (deleted at the end,
    with whatever their tasks left)."""

    def __init__(self, project_dir: Path, home: Path) -> None:
        self.project_dir = project_dir
        self.home = home
        self.dir = home / "leaddb"
        self.env = {**os.environ, "LEADDB_CACHE_DIR": str(self.dir), "INVOKE_DB_BACKEND": "local"}
        self.env.pop(statedir.STATE_DIR_ENV, None)
        self.checkouts: list[Path] = []
        self._tasks: dict[Path, object] = {}

    def checkout(self, at: Path | None = None) -> Path:
        root = at or Path(tempfile.mkdtemp(prefix="leaddb-co-"))
        root.mkdir(exist_ok=True)
        for name in PROJECT_FILES:
            shutil.copy(self.project_dir / name, root / name)
        shutil.copytree(self.project_dir / "api", root / "api")
        root.chmod(0o755)
        self.checkouts.append(root)
        return root

    def run(self, checkout: Path, *args: str) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [sys.executable, "-m", "invoke", *args],
            cwd=checkout,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
        return done

    def task(self, checkout: Path, *args: str) -> subprocess.CompletedProcess:
        """The task run in this process (tests/workspace.py), as ``run`` runs it in a child."""
        if checkout not in self._tasks:
            self._tasks[checkout] = load_tasks(checkout)
        done = in_process(checkout, self._tasks[checkout], self.env, *args)
        assert "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
        return done

    def pointer(self, checkout: Path) -> Path:
        key = hashlib.sha256(str(checkout.resolve()).encode()).hexdigest()[:16]
        return self.dir / f"state-{key}.json"

    def state_dir(self, checkout: Path) -> Path:
        return Path(json.loads(self.pointer(checkout).read_text(encoding="utf-8"))["state_dir"])

    def shared(self) -> Path | None:
        try:
            return Path(json.loads((self.dir / "shared.json").read_text(encoding="utf-8"))["state_dir"])
        except FileNotFoundError:
            return None


def postmaster(state_dir: Path) -> int:
    return int((state_dir / "cluster" / "data" / "postmaster.pid").read_text(encoding="utf-8").split()[0])


def alive(pid: int) -> bool:
    return local._alive(pid)


def gone_within(pid: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture(scope="module")
def user_home():
    """The user's per-user directory, for the module: the pristine built in the first test is
    shared by the next ones (as by a user's checkouts); everything removed at the end."""
    home = Path(tempfile.mkdtemp(prefix="leaddb-user-"))
    yield home
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEADDB_CACHE_DIR", str(home / "leaddb"))
        local.remove_everything(lambda line: None)
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def user(project_dir, user_home, monkeypatch):
    monkeypatch.setenv(
        "LEADDB_CACHE_DIR", str(user_home / "leaddb")
    )  # statedir, in this process, sees the same
    monkeypatch.delenv(statedir.STATE_DIR_ENV, raising=False)
    who = User(project_dir, user_home)
    yield who
    try:  # every checkout's server and state; the shared pristine stays for the next test
        for pointer in statedir.pointers(who.dir):
            if pointer.lock is not None:
                local._remove(pointer, only_if_gone=False)
    finally:
        for checkout in who.checkouts:
            shutil.rmtree(checkout, ignore_errors=True)


def reset(user: User, checkout: Path, *, child: bool = False) -> tuple[Path, int]:
    done = (user.run if child else user.task)(checkout, "db.reset")
    assert done.returncode == 0, done.stderr
    state = user.state_dir(checkout)
    return state, postmaster(state)


# -- the next command removes what a deleted checkout left ---------------------------------


def test_a_deleted_checkouts_server_and_state_are_gone_after_the_next_command(user):
    doomed = user.checkout()
    state, pid = reset(user, doomed, child=True)
    with psycopg.connect(local.Cluster(state / "cluster").conninfo(), autocommit=True) as conn:
        conn.execute("DROP TABLE invoice_line_items")
    failed = user.task(doomed, "db.status")  # a failed task (exit 6) leaves its server running
    assert failed.returncode == 6, failed.stdout + failed.stderr
    assert alive(pid) and state.is_dir() and user.pointer(doomed).is_file()
    shutil.rmtree(doomed)  # the checkout goes away (CI removes its clone)

    elsewhere = user.checkout()
    done = user.run(elsewhere, "db.down")  # any local task of any other checkout
    assert done.returncode == 0, done.stderr
    swept = [line for line in done.stdout.splitlines() if "deleted checkout" in line]
    assert len(swept) == 1, done.stdout  # said in one line
    assert swept[0].startswith(
        f"local: removed what 1 deleted checkout(s) left ({doomed}): 1 server(s) stopped, "
    )
    assert swept[0].endswith(" MB freed")
    assert gone_within(pid), f"the server of the deleted checkout (pid {pid}) still runs"
    assert not os.path.lexists(state)
    assert not user.pointer(doomed).exists()
    assert not user.pointer(doomed).with_suffix(".lock").exists()
    # said once: the next command has nothing to say
    again = user.task(elsewhere, "db.down")  # in process: the sweep reads only what is on disk
    assert "deleted checkout" not in again.stdout


def test_a_deleted_checkouts_pointer_whose_state_a_reboot_emptied_is_forgotten(user, tmp_path):
    """After a reboot the RAM disk is empty: only the pointers of deleted checkouts are left."""
    doomed = user.checkout()
    state, pid = reset(user, doomed)
    local.Cluster(state / "cluster").stop("immediate")
    shutil.rmtree(state)  # the reboot
    shutil.rmtree(doomed)
    done = user.task(user.checkout(), "db.down")
    assert "local: forgot 1 deleted checkout(s) whose state was gone already" in done.stdout, done.stdout
    assert "removed what" not in done.stdout
    assert not user.pointer(doomed).exists()


def test_a_checkout_made_again_at_the_same_path_is_not_gone(user):
    first = user.checkout()
    state, pid = reset(user, first)
    shutil.rmtree(first)
    user.checkout(at=first)  # a new clone at the same path, before any other command ran
    other = user.checkout()
    done = user.task(other, "db.down")
    assert "deleted checkout" not in done.stdout
    assert alive(pid) and state.is_dir() and user.pointer(first).is_file()
    applied = user.task(first, "db.apply")  # it goes on using its state
    assert applied.returncode == 0, applied.stderr
    assert user.state_dir(first) == state and postmaster(state) == pid


def test_only_the_server_working_in_that_data_directory_is_stopped(user):
    """postmaster.pid naming another process (a crash, then a reboot gave the pid away)."""
    doomed = user.checkout()
    state, pid = reset(user, doomed)
    cluster = local.Cluster(state / "cluster")
    assert cluster.stop("immediate") and gone_within(pid)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        (cluster.data / "postmaster.pid").write_text(
            f"{bystander.pid}\n{cluster.data}\n", encoding="utf-8", newline="\n"
        )
        shutil.rmtree(doomed)
        done = user.task(user.checkout(), "db.down")
        assert f"left ({doomed}): 0 server(s) stopped" in done.stdout, done.stdout
        assert bystander.poll() is None, "an unrelated process was signalled"
        assert not os.path.lexists(state)
    finally:
        bystander.kill()
        bystander.wait()


def test_a_task_still_running_for_a_deleted_checkout_keeps_its_state_until_it_ends(user):
    doomed = user.checkout()
    state, pid = reset(user, doomed)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from leaddb import locks\n"
            "with locks.hold(Path(sys.argv[1]), 'db.bench', 'the cluster'):\n"
            "    print('held', flush=True); sys.stdin.readline()",
            str(state / "reset.lock"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**user.env, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        shutil.rmtree(doomed)
        other = user.checkout()
        done = user.task(other, "db.down")
        assert done.returncode == 0, done.stderr  # the sweep never fails the task that runs it
        assert (
            f"local: kept {state} of {doomed}: another db.bench of {state} is running (pid {holder.pid};"
            in (done.stdout)
        )
        assert alive(pid) and state.is_dir() and user.pointer(doomed).is_file()
    finally:
        holder.communicate("\n", timeout=30)
    done = user.task(other, "db.down")  # it ended: the next command removes it
    assert f"left ({doomed}): 1 server(s) stopped" in done.stdout
    assert gone_within(pid) and not os.path.lexists(state)


# -- pointers that name what is not theirs -------------------------------------------------


def plant_pointer(user: User, checkout: Path, state_dir: Path) -> Path:
    pointer = user.pointer(checkout)
    pointer.parent.mkdir(parents=True, exist_ok=True)
    pointer.write_text(
        json.dumps({"checkout": str(checkout), "state_dir": str(state_dir)}), encoding="utf-8", newline="\n"
    )
    return pointer


def listing(path: Path) -> dict[str, bytes | str]:
    return {
        str(p.relative_to(path)): (p.read_bytes() if p.is_file() and not p.is_symlink() else "")
        for p in sorted(path.rglob("*"))
    }


def test_a_pointer_naming_a_directory_statedir_did_not_make_leaves_it_alone(user, tmp_path):
    user.task(user.checkout(), "db.down")  # the user directory exists
    precious = Path(tempfile.mkdtemp(prefix="leaddb-precious-", dir=statedir.scratch_root()))
    try:
        (precious / "cluster").mkdir()
        (precious / "cluster" / ".leaddb-cluster").write_text(
            "a cluster marker\n", encoding="utf-8", newline="\n"
        )
        (precious / "notes.txt").write_text(
            "mine\n", encoding="utf-8", newline="\n"
        )  # not a layout statedir makes
        home_dir = Path(tempfile.mkdtemp(prefix="leaddb-", dir=tmp_path))  # named as mkdtemp names ours
        (home_dir / "data.txt").write_text("mine too\n", encoding="utf-8", newline="\n")
        before = listing(precious), listing(home_dir)
        gone = [tmp_path / "gone-a", tmp_path / "gone-b", tmp_path / "gone-c"]
        pointers = [
            plant_pointer(user, gone[0], precious),
            plant_pointer(user, gone[1], home_dir),
            plant_pointer(user, gone[2], Path("/etc")),  # ours as root, but no state directory
        ]
        done = user.task(user.checkout(), "db.down")
        assert done.returncode == 0, done.stderr
        for checkout, target in zip(gone, (precious, home_dir, Path("/etc")), strict=True):
            assert (
                f"kept {target} of {checkout}: not a directory leaddb made for it; left alone" in done.stdout
            )
        assert (listing(precious), listing(home_dir)) == before
        assert Path("/etc/passwd").is_file()
        assert not any(p.exists() for p in pointers)  # never followed again
    finally:
        shutil.rmtree(precious, ignore_errors=True)


def test_a_pointer_naming_another_checkouts_directory_leaves_it_and_its_server_alone(user, tmp_path):
    live = user.checkout()
    state, pid = reset(user, live)
    planted = plant_pointer(user, tmp_path / "gone", state)  # a copy of live's pointer, for a gone path
    done = user.task(user.checkout(), "db.down")
    assert f"kept {state} of {tmp_path / 'gone'}: not a directory leaddb made for it" in done.stdout
    assert alive(pid) and state.is_dir() and not planted.exists()
    assert user.task(live, "db.apply").returncode == 0  # live's own pointer and state untouched


def test_pointers_that_do_not_read_as_statedir_writes_them_are_not_acted_on(user, tmp_path):
    user.task(user.checkout(), "db.down")
    victim = Path(tempfile.mkdtemp(prefix="leaddb-", dir=statedir.scratch_root()))
    try:
        (victim / "reset.lock").write_bytes(b"")
        link_key = hashlib.sha256(str(tmp_path / "linked").encode()).hexdigest()[:16]
        gone = str(tmp_path / "gone")
        key = hashlib.sha256(gone.encode()).hexdigest()[:16]
        odd = {
            "state-0000000000000000.json": json.dumps(
                {"checkout": gone, "state_dir": str(victim)}
            ),  # wrong key
            f"state-{key}.json": json.dumps({"checkout": "relative/path", "state_dir": str(victim)}),
            "state-1111111111111111.json": "{not json",
        }
        for name, text in odd.items():
            (user.dir / name).write_text(text, encoding="utf-8", newline="\n")
        target = tmp_path / "pointer.json"
        target.write_text(
            json.dumps({"checkout": str(tmp_path / "linked"), "state_dir": str(victim)}),
            encoding="utf-8",
            newline="\n",
        )
        (user.dir / f"state-{link_key}.json").symlink_to(target)
        found = statedir.pointers(user.dir)
        assert [p.state_dir for p in found if p.state_dir == victim] == []
        done = user.task(user.checkout(), "db.down")
        assert "deleted checkout" not in done.stdout and "kept" not in done.stdout
        assert victim.is_dir() and (victim / "reset.lock").is_file()
        assert all((user.dir / name).exists() for name in odd)
    finally:
        shutil.rmtree(victim, ignore_errors=True)
        for name in [*odd, f"state-{link_key}.json"]:
            (user.dir / name).unlink(missing_ok=True)


def test_a_state_directory_made_before_markers_is_recognised_by_its_layout(user, tmp_path):
    """An older version's state directory: no marker, its own pristine in it."""
    doomed = user.checkout()
    state, pid = reset(user, doomed)
    (state / statedir.STATE_MARKER).unlink()
    old = state / "pristine-0123456789abcdef"
    shutil.copytree(user.shared() / next(p.name for p in user.shared().glob("pristine-*")), old)
    shutil.rmtree(doomed)
    done = user.task(user.checkout(), "db.down")
    assert f"left ({doomed}): 1 server(s) stopped" in done.stdout, done.stdout
    assert gone_within(pid) and not os.path.lexists(state)
    # the same with something of another kind in it: left alone
    other = user.checkout()
    state, pid = reset(user, other)
    (state / statedir.STATE_MARKER).unlink()
    (state / "mine.txt").write_text("not the backend's\n", encoding="utf-8", newline="\n")
    shutil.rmtree(other)
    done = user.task(user.checkout(), "db.down")
    assert f"kept {state} of {other}: not a directory leaddb made for it" in done.stdout
    assert alive(pid) and (state / "mine.txt").is_file()
    local.Cluster(state / "cluster").stop("immediate")
    shutil.rmtree(state)


def test_a_live_checkouts_state_made_before_markers_is_marked_on_its_next_use(user):
    checkout = user.checkout()
    state, _ = reset(user, checkout)
    (state / statedir.STATE_MARKER).unlink()
    assert user.task(checkout, "db.apply").returncode == 0
    assert json.loads((state / statedir.STATE_MARKER).read_text(encoding="utf-8")) == {
        "checkout": str(checkout.resolve())
    }


# -- the pristine: one per user, shared by every checkout ---------------------------------


def test_checkouts_share_one_pristine_built_once(user):
    local.drop_pristines()  # as for a new user
    first, second = user.checkout(), user.checkout()
    cold = user.task(first, "db.reset")
    warm = user.task(second, "db.reset")
    assert "initdb (cold)" in cold.stdout and "initdb (cold)" not in warm.stdout
    shared = user.shared()
    assert len(list(shared.glob("pristine-*"))) == 1
    for checkout in (first, second):
        assert not list(user.state_dir(checkout).glob("pristine-*"))  # none per checkout
    # db.down leaves it for the next reset of any checkout
    down = user.task(first, "db.down")
    assert f"the pristine initdb output every checkout copies stays in {shared}" in down.stdout
    assert len(list(shared.glob("pristine-*"))) == 1


def test_two_checkouts_building_the_pristine_at_once_build_it_once(user):
    local.drop_pristines()
    checkouts = [user.checkout(), user.checkout()]
    racers = [
        subprocess.Popen(
            [sys.executable, "-m", "invoke", "db.reset"],
            cwd=c,
            env=user.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for c in checkouts
    ]
    outputs = [r.communicate(timeout=300) for r in racers]
    assert [r.returncode for r in racers] == [0, 0], outputs
    assert sum("initdb (cold)" in out for out, _ in outputs) == 1, outputs
    shared = user.shared()
    assert len(list(shared.glob("pristine-*"))) == 1
    assert not list(shared.glob(".tomb-*"))


def test_a_stale_pristine_of_an_older_version_is_removed_from_a_checkouts_state(user):
    checkout = user.checkout()
    state, _ = reset(user, checkout)
    old = state / "pristine-fedcba9876543210"
    old.mkdir()
    (old / "key.json").write_text("{}", encoding="utf-8", newline="\n")
    done = user.task(checkout, "db.reset")
    assert done.returncode == 0 and not old.exists()


@pytest.mark.posix_only("another user's directory: POSIX owners (and acting as another user needs root)")
def test_a_shared_pointer_naming_another_users_directory_is_re_pointed(user, tmp_path):
    if not platforms.running_as_root():
        pytest.skip("acting as another user needs root")
    nobody = platforms.user_ids("nobody")
    local.remove_everything(lambda line: None)  # a user without a shared directory yet
    theirs = Path(tempfile.mkdtemp(prefix="leaddb-", dir=statedir.scratch_root()))
    try:
        platforms.chown(theirs, *nobody)
        user.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        (user.dir / "shared.json").write_text(
            json.dumps({**statedir.SHARED_RECORD, "state_dir": str(theirs)}), encoding="utf-8", newline="\n"
        )
        done = user.task(user.checkout(), "db.reset")
        assert done.returncode == 0, done.stderr
        assert user.shared() != theirs and os.lstat(user.shared()).st_uid == 0
        assert list(theirs.iterdir()) == []  # nothing written into it
    finally:
        shutil.rmtree(theirs, ignore_errors=True)


# -- db.down --all -------------------------------------------------------------------------


def test_down_all_removes_everything_of_the_users_and_says_what(user):
    kept, doomed = user.checkout(), user.checkout()
    kept_state, kept_pid = reset(user, kept)
    doomed_state, doomed_pid = reset(user, doomed)
    shutil.rmtree(doomed)
    (user.dir / "drift-expected-0123.json").write_text("{}", encoding="utf-8", newline="\n")  # a cache entry
    foreign = Path(tempfile.mkdtemp(prefix="leaddb-foreign-"))  # a pointer to what is not its own
    (foreign / "keep.txt").write_text("not leaddb's\n", encoding="utf-8", newline="\n")
    live_foreign = user.checkout()
    plant_pointer(user, live_foreign, foreign)
    shared = user.shared()
    here = user.checkout()
    try:
        done = user.run(here, "db.down", "--all")
        assert (foreign / "keep.txt").read_text(encoding="utf-8") == "not leaddb's\n"
    finally:
        shutil.rmtree(foreign)
    assert done.returncode == 0, done.stderr  # what is not its own is left alone, and that is no failure
    out = done.stdout
    assert f"local: kept {foreign} of {live_foreign}: not a directory leaddb made for it; left alone" in out
    assert f"removed what 1 deleted checkout(s) left ({doomed}): 1 server(s) stopped" in out  # the sweep
    assert f"local: stopped 1 server(s), removed {kept_state} of {kept} (" in out
    assert f"removed {shared} (the pristine initdb output every checkout copies) (" in out
    # the planted entry, and those the tasks cached (the spec, the verdict, ...): gone, as listed below
    removed = re.search(rf"local: removed (\d+) cache entr(?:y|ies) from {re.escape(str(user.dir))}\n", out)
    assert removed and int(removed[1]) >= 1, out
    assert gone_within(kept_pid) and gone_within(doomed_pid)
    for path in (kept_state, doomed_state, shared):
        assert not os.path.lexists(path)
    assert sorted(p.name for p in user.dir.iterdir() if not p.name.endswith(".lock")) == []
    # and again: nothing left to say but that
    again = user.task(here, "db.down", "--all")
    assert again.returncode == 0 and "(the pristine initdb output" not in again.stdout


def test_down_all_keeps_a_checkout_whose_task_runs_and_fails_naming_it(user):
    busy = user.checkout()
    state, pid = reset(user, busy)
    with locks.hold(state / "reset.lock", "db.bench", "the cluster"):
        # the lock is per open file: a task in another process is refused
        done = user.run(user.checkout(), "db.down", "--all")
    assert done.returncode == 1
    assert (
        f"local: kept {state} of {busy}: another db.bench of {state} is running (pid {os.getpid()};"
        in done.stdout
    )
    assert "db.down --all kept 1 state directory (said above)" in done.stderr
    assert alive(pid) and state.is_dir()
    assert user.pointer(busy).is_file()  # still found by the next db.down --all (or sweep, once gone)
    assert user.shared() is None  # the rest was removed
    again = user.task(user.checkout(), "db.down", "--all")  # the task ended: now it goes
    assert again.returncode == 0, again.stderr
    assert f"local: stopped 1 server(s), removed {state} of {busy} (" in again.stdout
    assert gone_within(pid) and not os.path.lexists(state)
