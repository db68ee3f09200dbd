"""A fresh local cluster without paying initdb each time (issue 13, item 4), and a removal that is
crash-safe at every point (issue 10, part 3).

Every reset copies one pristine ``initdb`` output kept in the private state directory: the copy is
a new, empty cluster (nothing of a previous run survives; the superuser password is the
cluster's own), the pristine is never started, and a change of what ``initdb`` would write
builds a new one. A cluster is removed by renaming it to a tombstone first; a task killed at
any step leaves garbage that the next ``db.reset`` or ``db.down`` removes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
import pytest
from workspace import Workspace

from leaddb import bench, nofollow, platforms, statedir, tombstones
from leaddb.backends import pristine as pristine_cache
from leaddb.backends.cluster import MARKER
from leaddb.backends.local import LocalBackend, Pristine

pytestmark = pytest.mark.needs_pg_binaries  # every test here runs the local backend's own cluster


@pytest.fixture
def backend(project_dir):
    """A local backend of the test's own (its own private state directory)."""
    state = Path(tempfile.mkdtemp(prefix="leaddb-pristine-", dir=statedir.scratch_root()))
    ours = LocalBackend(project_dir, state_dir=state)
    yield ours
    ours.down()
    shutil.rmtree(state, ignore_errors=True)


def phase_names(report) -> list[str]:
    return [p.name for p in report.phases]


def pristines(backend: LocalBackend) -> list[Path]:
    """The user's pristines (shared by every checkout; the run's own user directory)."""
    home = statedir.shared_dir(create=False)
    return sorted(home.glob(f"{Pristine.PREFIX}*")) if home else []


def fingerprint(tree: Path) -> str:
    """Names, sizes and contents of every file under ``tree``."""
    digest = hashlib.sha256()
    for path in sorted(tree.rglob("*")):
        digest.update(str(path.relative_to(tree)).encode())
        if path.is_file() and not path.is_symlink():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def tcp(backend: LocalBackend, password: str, dbname: str = "postgres") -> str:
    state = backend.cluster.state()
    return psycopg.conninfo.make_conninfo(
        host="127.0.0.1", port=state.port, user="postgres", password=password, dbname=dbname
    )


def test_each_reset_copies_a_new_empty_cluster_from_a_pristine_never_started(backend, migration_files):
    backend.drop_init_cache()  # as on a first reset of this user's
    first = backend.reset(migration_files)
    assert phase_names(first) == ["remove", "initdb (cold)", "copy pristine", "start", "createdb", "apply"]
    (pristine,) = pristines(backend)
    built = fingerprint(pristine)
    first_password = backend.cluster.state().password
    pristine_password = nofollow.read_utf8(pristine / "password").strip()
    with psycopg.connect(backend.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE left_behind (id int)")
        conn.execute("INSERT INTO left_behind VALUES (1)")
        conn.execute("CREATE ROLE left_role")
    with psycopg.connect(backend.conninfo("postgres"), autocommit=True) as conn:
        conn.execute("CREATE DATABASE left_db")

    second = backend.reset(migration_files)
    assert phase_names(second) == ["remove", "copy pristine", "start", "createdb", "apply"]
    with psycopg.connect(backend.conninfo()) as conn:
        assert conn.execute("SELECT to_regclass('left_behind')").fetchone()[0] is None
        assert conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = 'left_role'").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname = 'left_db'").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM markets").fetchone()[0] == 0  # migrated, empty
    # the pristine was copied, never started or changed
    assert pristines(backend) == [pristine]
    assert not (pristine / "data" / "postmaster.pid").exists()
    assert fingerprint(pristine) == built
    # each cluster has a password of its own; TCP (scram) accepts it and no other
    second_password = backend.cluster.state().password
    assert len({first_password, second_password, pristine_password}) == 3
    with psycopg.connect(tcp(backend, second_password)) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == "postgres"
    for stale in (first_password, pristine_password):
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(tcp(backend, stale)).close()


def test_the_database_of_a_new_cluster_is_copied_file_by_file(backend, migration_files):
    """CREATE DATABASE ... STRATEGY FILE_COPY on the cluster the reset just made (two requested
    checkpoints, none else on a fresh copy), not WAL_LOG, which logs every block of template1."""
    backend.reset(migration_files)
    with psycopg.connect(backend.conninfo()) as conn:
        assert conn.execute("SELECT checkpoints_req FROM pg_stat_bgwriter").fetchone()[0] >= 2


def test_the_password_never_reaches_the_server_in_clear(backend, migration_files):
    backend.reset(migration_files)
    password = backend.cluster.state().password
    with psycopg.connect(backend.conninfo("postgres"), autocommit=True) as conn:
        conn.execute("SET log_statement = 'all'")  # what the server would log of the next rotation
        backend.cluster.set_password(conn, backend.cluster.state())
        (stored,) = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = 'postgres'").fetchone()
    assert stored.startswith("SCRAM-SHA-256$")
    new = backend.cluster.state().password
    assert new != password
    log = backend.cluster.log.read_text(encoding="utf-8", errors="replace")
    assert "ALTER ROLE" in log and new not in log


def test_a_change_of_what_initdb_writes_builds_a_new_pristine(backend, migration_files, monkeypatch):
    backend.reset(migration_files)
    (old,) = pristines(backend)
    with psycopg.connect(backend.conninfo()) as conn:
        assert conn.execute("SHOW data_checksums").fetchone()[0] == "off"
    monkeypatch.setattr(pristine_cache, "INITDB_ARGS", (*pristine_cache.INITDB_ARGS, "--data-checksums"))
    changed = backend.reset(migration_files)
    assert "initdb (cold)" in phase_names(changed)
    (new,) = pristines(backend)  # the stale one is gone
    assert new != old
    with psycopg.connect(backend.conninfo()) as conn:
        assert conn.execute("SHOW data_checksums").fetchone()[0] == "on"
    monkeypatch.setenv("TZ", "Pacific/Chatham")  # initdb writes the timezone into the cluster
    moved = backend.reset(migration_files)
    assert "initdb (cold)" in phase_names(moved)
    with psycopg.connect(backend.conninfo()) as conn:
        assert conn.execute("SHOW TimeZone").fetchone()[0] == "Pacific/Chatham"
    monkeypatch.delenv("TZ")
    assert "initdb (cold)" in phase_names(backend.reset(migration_files))
    assert "initdb (cold)" not in phase_names(backend.reset(migration_files))


@pytest.mark.posix_only("owners and mode bits, as root")
@pytest.mark.skipif(not platforms.running_as_root() and not os.environ.get("CI"), reason="ownership as root")
def test_as_root_the_pristine_is_roots_and_each_copy_the_servers(backend, migration_files):
    import pwd

    postgres = pwd.getpwnam("postgres")
    backend.reset(migration_files)
    state_dir = backend.state_dir
    assert (os.lstat(state_dir).st_uid, os.lstat(state_dir).st_gid) == (0, postgres.pw_gid)
    (pristine,) = pristines(backend)
    assert {os.lstat(p).st_uid for p in [pristine, *pristine.rglob("*")]} == {0}
    home = pristine.parent  # the user's shared directory: the server user may only traverse it
    assert (os.lstat(home).st_uid, os.lstat(home).st_gid, os.lstat(home).st_mode & 0o777) == (
        0,
        postgres.pw_gid,
        0o710,
    )
    cluster = backend.cluster.root
    owners = {p.name: os.lstat(p).st_uid for p in cluster.iterdir()}
    assert owners.pop("state.json") == 0  # written by us, 0600
    assert "pg_ctl.out" not in owners  # POSIX starts the postmaster itself, not through pg_ctl
    assert set(owners.values()) == {postgres.pw_uid}
    assert {os.lstat(p).st_uid for p in backend.cluster.data.rglob("*")} == {postgres.pw_uid}
    assert oct(os.lstat(cluster).st_mode & 0o777) == "0o700"


def test_the_bench_times_a_cold_and_a_warm_reset_in_each_run(backend, migration_files):
    result = bench.run(backend, migration_files, 1, {})
    (record,) = result.runs
    assert "initdb (cold)" in record["cold phases"] and "copy pristine" in record["cold phases"]
    assert "initdb (cold)" not in record["phases"] and "copy pristine" in record["phases"]
    metrics = {s.metric for s in result.summaries}
    assert {bench.COLD_BOOT, "fresh boot + apply (total)", "  phase: initdb (cold)"} <= metrics
    assert "  phase: copy pristine" in metrics
    assert record[bench.COLD_BOOT] >= record["cold phases"]["initdb (cold)"]
    assert any(name.startswith("cold fresh boot (initdb) / warm") for name in result.ratios)


# -- crash-safe removal --------------------------------------------------------------------

# A task killed at a chosen step, deterministically: the step's function is wrapped so that
# the process signals itself there (SIGKILL: nothing runs after; SIGINT: Ctrl-C, Python unwinds).
CRASHING = r"""
import os, signal, sys
from leaddb import platforms, tombstones
from leaddb.backends import cluster, local

step, sig = sys.argv[1], int(sys.argv[2])
state = {"armed": step not in ("unlink",)}

def die():
    os.kill(os.getpid(), sig)
    for _ in range(10**8):  # SIGINT raises KeyboardInterrupt at the next instruction
        pass

def after(owner, name, condition=lambda *a, **k: True):
    original = getattr(owner, name)
    def wrapped(*args, **kwargs):
        result = original(*args, **kwargs)
        if condition(*args, **kwargs):
            die()
        return result
    setattr(owner, name, wrapped)

if step == "stop":  # the old server stopped, its directory still in place
    after(local.Cluster, "stop")
elif step == "bury":  # renamed to a tombstone, nothing removed yet
    after(tombstones, "bury")
elif step == "unlink":  # half the tombstone removed (the issue's Ctrl-C during removal)
    unlink, count = os.unlink, [0]
    def counting(*args, **kwargs):
        unlink(*args, **kwargs)
        count[0] += 1
        if count[0] == 300:
            die()
    original_bury = tombstones.bury
    def bury(*args, **kwargs):
        os.unlink = counting
        return original_bury(*args, **kwargs)
    tombstones.bury = bury
elif step == "initdb":  # the pristine built but not yet moved into place
    after(cluster, "run_captured", lambda argv, what, *a, **k: what == "initdb")
elif step == "copy":  # half the pristine copied (file by file: platforms.copy_tree on POSIX)
    copy, count = platforms._copy_file_posix, [0]
    def counting_copy(*args, **kwargs):
        copy(*args, **kwargs)
        count[0] += 1
        if count[0] == 300:
            die()
    platforms._copy_file_posix = counting_copy
elif step == "placed":  # the new cluster in place, its server not started
    after(local.Cluster, "create")
elif step == "start":  # the new server running, its password still the pristine's
    after(local.Cluster, "start")

from invoke.main import program
program.run(["invoke", *sys.argv[3:]])
"""


class Checkout(Workspace):
    """A copy of the project (tests/workspace.py) whose state directory is on a disk (the issue's
    case), run as a user does."""

    def __init__(self, project_dir: Path) -> None:
        super().__init__(project_dir, prefix="leaddb-crash-", env={"INVOKE_DB_BACKEND": "local"})
        self.state = self.root / "state"
        self.env[statedir.STATE_DIR_ENV] = str(self.state)

    def crash(self, step: str, sig: int, *task: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-c", CRASHING, step, str(int(sig)), *task],
            cwd=self.root,
            env={**self.env, "PYTHONPATH": os.pathsep.join(sys.path)},
            capture_output=True,
            text=True,
            timeout=300,
        )

    @property
    def backend(self) -> LocalBackend:
        return LocalBackend(self.root, state_dir=self.state)

    def tombstones(self) -> list[str]:
        """Leftovers of an interrupted task: in the state directory, and (of a pristine's build)
        in the user's shared directory."""
        home = statedir.shared_dir(create=False)
        places = [self.state, *([home] if home else [])]
        return sorted(p.name for place in places for p in place.glob(f"{tombstones.TOMBSTONE_PREFIX}*"))


@pytest.fixture(scope="module")
def crash_checkout(project_dir):
    checkout = Checkout(project_dir)
    yield checkout
    checkout.in_process("db.down")  # a clean-up, not a proof: no child's start-up
    checkout.remove()


# (the task killed, the step it is killed at, the signal, the task that must then recover); the
# signals by name: this module is imported on Windows too, which has no SIGKILL
CRASH_CASES = [
    ("db.reset", "stop", "SIGKILL", "db.reset"),
    ("db.reset", "bury", "SIGKILL", "db.reset"),
    ("db.reset", "unlink", "SIGKILL", "db.reset"),
    ("db.reset", "unlink", "SIGINT", "db.down"),  # the issue's case: Ctrl-C during removal
    ("db.reset", "unlink", "SIGINT", "db.reset"),
    ("db.reset", "initdb", "SIGKILL", "db.reset"),
    ("db.reset", "copy", "SIGKILL", "db.reset"),
    ("db.reset", "copy", "SIGINT", "db.down"),
    ("db.reset", "placed", "SIGKILL", "db.reset"),
    ("db.reset", "start", "SIGKILL", "db.down"),
    ("db.down", "bury", "SIGKILL", "db.reset"),
    ("db.down", "unlink", "SIGKILL", "db.down"),
    ("db.down", "unlink", "SIGINT", "db.reset"),
]


@pytest.mark.slow
@pytest.mark.posix_only("a task killed by a signal it sends itself: SIGKILL, or SIGINT unwinding as Ctrl-C")
@pytest.mark.parametrize(
    ("task", "step", "signal_name", "recovery"),
    CRASH_CASES,
    ids=[f"{t} killed at {s} by {g}, then {r}" for t, s, g, r in CRASH_CASES],
)
def test_a_task_killed_at_any_step_leaves_what_reset_and_down_recover(
    crash_checkout, migration_files, task, step, signal_name, recovery
):
    sig = signal.Signals[signal_name]
    checkout = crash_checkout
    backend = checkout.backend
    if not backend.cluster.exists:  # a cluster for the killed task to remove
        backend.reset(migration_files)
    server = backend.cluster.conninfo("postgres")
    if step in ("initdb", "copy"):  # steps of a cold reset
        backend.drop_init_cache()
    crashed = checkout.crash(step, sig, task)
    if sig == signal.SIGKILL:
        assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    else:  # Ctrl-C: what the task prints for it is not this test's concern, only what it leaves
        assert crashed.returncode != 0, crashed.stdout
    if step in ("bury", "unlink", "initdb", "copy"):
        assert checkout.tombstones(), "the kill should have left a tombstone to recover from"
    if step == "unlink":  # half removed, yet no cluster without its marker: the half is a tombstone
        assert not backend.cluster.exists or nofollow.is_regular_file(backend.cluster.root / MARKER)

    # the issue's case recovers as a user runs it; the others with the same task in this process
    # (tests/workspace.py): what the killed task left is on disk, and the recovery reads only that
    issues_case = (task, step, signal_name, recovery) == ("db.reset", "unlink", "SIGINT", "db.down")
    recovered = checkout(recovery) if issues_case else checkout.in_process(recovery)
    assert recovered.returncode == 0, recovered.stderr
    assert "Traceback" not in recovered.stderr + recovered.stdout
    assert checkout.tombstones() == []
    if recovery == "db.reset":
        with psycopg.connect(backend.conninfo()) as conn:
            assert conn.execute("SELECT count(*) FROM markets").fetchone()[0] == 0
    else:
        assert not backend.cluster.exists
        assert [p.name for p in checkout.state.iterdir() if not p.name.startswith(Pristine.PREFIX)] == [
            "reset.lock"
        ]
        with pytest.raises(psycopg.OperationalError):  # no server left running either
            psycopg.connect(server, connect_timeout=10).close()
