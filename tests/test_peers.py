"""The side-by-side harness (benchmarks/peers.py) and the Docker storage report.

What is checked here is what the figures rest on: the goals' arithmetic, dbmate's files
meaning what ours mean, the commands' own reports still parsed, and one real round."""

from __future__ import annotations

import contextlib
import io
import json
import types
from pathlib import Path

import peers_harness
import pytest

from leaddb import migrations, views
from leaddb.backends.base import BootReport, Phase
from leaddb.backends.docker import engine
from leaddb.runner import ApplyResult, FileResult

PROJECT_DIR = Path(__file__).resolve().parent.parent


peers = peers_harness.load()


# -- goals -------------------------------------------------------------------------------


def test_budget_goal_met_and_missed_by_how_much():
    met = peers.budget_goal("db.apply", whole=0.600, floor=0.400, in_process=0.150)
    assert met.met is True and met.limit.endswith("= 605 ms") and "to spare" in met.status
    missed = peers.budget_goal("db.apply", whole=1.474, floor=0.400, in_process=0.169)
    limit = 1.1 * (0.400 + 0.169)
    assert missed.met is False
    assert (
        missed.status
        == f"missed by {round((1.474 - limit) * 1000)} ms (cut {100 * (1.474 - limit) / 1.474:.0f}%)"
    )


def test_ratio_goal_states_both_medians_and_the_ratio():
    goal = peers.ratio_goal("db.drift whole ≤ 0.5× migra", ours=0.86, peer=1.16, factor=0.5)
    assert goal.met is False
    assert goal.measured == "0.74× (860 ms vs 1.16 s)"
    assert goal.limit == "0.5× = 580 ms"
    assert goal.status == "missed by 280 ms (cut 33%)"
    assert peers.ratio_goal("x", ours=0.1, peer=0.3, factor=0.5).met is True


def test_a_ratio_goal_below_the_floor_of_a_python_task_says_so():
    goal = peers.ratio_goal("fast", ours=0.787, peer=0.151, factor=2.0, floor=0.40)
    assert goal.status.endswith("; the floor alone (400 ms) is above the limit")
    assert (
        "floor alone" not in peers.ratio_goal("fast", ours=0.787, peer=0.151, factor=2.0, floor=0.25).status
    )


def test_goals_not_measured_are_said_so_not_passed():
    rows = peers.goals({peers.FLOOR: 0.4, "apply.whole": 0.7, "apply.inproc": 0.2})
    by_goal = {g.goal: g for g in rows}
    assert by_goal["invoke db.apply whole ≤ (floor + in-process) + 10%"].met is False
    unmeasured = [g for g in rows if g.met is None]
    assert unmeasured and all(g.status.startswith("not measured") for g in unmeasured)
    assert len(rows) == len(peers.TASK_BUDGETS) + 6


# -- what the commands print about themselves ----------------------------------------------


def _printed(call) -> str:
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink):
        call()
    return sink.getvalue()


def test_self_reports_are_read_from_the_commands_real_output(migration_files):
    result = ApplyResult([FileResult(m, 0.01, len(m.statements)) for m in migration_files], seconds=0.169)
    out = _printed(lambda: views.print_apply(result, PROJECT_DIR, "apply"))
    assert peers.self_reported("apply", out) == pytest.approx(0.169)
    out = _printed(lambda: views.print_apply(result, PROJECT_DIR, "reapply"))
    assert peers.self_reported("reapply", out) == pytest.approx(0.169)
    boot = BootReport("local", [Phase("initdb", 0.5), Phase("apply", 1.25)])
    assert peers.self_reported("reset", _printed(lambda: views.print_boot(boot))) == pytest.approx(1.75)
    assert peers.self_reported("drift", "drift: none (273 objects compared in 280 ms)") == pytest.approx(0.28)
    assert peers.self_reported("apply", "something else entirely") is None


# -- dbmate's format ---------------------------------------------------------------------


def test_every_project_migration_keeps_one_transaction_under_dbmate(migration_files):
    for m in migration_files:
        text, mode = peers.to_dbmate(m.text, m.name)
        assert mode == "dbmate's transaction", m.name
        assert text.startswith("-- migrate:up\n") and text.endswith("\n-- migrate:down\n")
        body = text.split("\n", 1)[1].rsplit("\n\n-- migrate:down\n", 1)[0]
        assert len(body.splitlines()) == len(m.text.rstrip("\n").splitlines())  # lines stay where they were
        adapted = migrations.split_statements(body, m.name)
        original = m.statements
        assert [s.sql for s in adapted] == [s.sql for s in original[1:-1]]
        assert [s.line for s in adapted] == [s.line for s in original[1:-1]]


@pytest.mark.parametrize(
    "text",
    [
        "CREATE TABLE t (id int);\n",  # no transaction of its own
        "BEGIN; CREATE TABLE t (id int);\nCOMMIT;\n",  # BEGIN shares its line
        "BEGIN;\nCREATE TABLE t (id int);\nCOMMIT;\nCREATE INDEX i ON t (id);\n",  # more after COMMIT
    ],
)
def test_other_files_are_kept_verbatim_outside_dbmates_transaction(text):
    adapted, mode = peers.to_dbmate(text, "0001_x.sql")
    assert mode == "the file's own (transaction:false)"
    assert adapted == f"-- migrate:up transaction:false\n{text.rstrip()}\n\n-- migrate:down\n"


# -- import time -------------------------------------------------------------------------


def test_importtime_lines_are_parsed_with_depth_and_rolled_up_by_package():
    stderr = (
        "import time: self [us] | cumulative | imported package\n"
        "import time:       100 |        100 |     psycopg.pq\n"
        "import time:      2000 |       2100 |   psycopg\n"
        "import time:       500 |       2600 | invoke\n"
        "some warning line\n"
    )
    rows = peers.parse_importtime(stderr)
    assert [(r.module, r.self_us, r.cumulative_us, r.depth) for r in rows] == [
        ("psycopg.pq", 100, 100, 2),
        ("psycopg", 2000, 2100, 1),
        ("invoke", 500, 2600, 0),
    ]
    assert peers.by_package(rows) == {"psycopg": 2100, "invoke": 500}


def test_arguments_are_checked():
    with pytest.raises(SystemExit):
        peers.parse_args(["--only", "apply,nonsense"])
    with pytest.raises(SystemExit):
        peers.parse_args(["--files", "10000"])  # NNNN_ numbering stops at 9999
    args = peers.parse_args(["--only", "fast", "--only", "reset,imports"])
    assert args.only == ["fast", "reset", "imports"]
    assert "big" not in peers.parse_args([]).only


def test_a_peer_that_cannot_be_installed_is_a_note_not_a_crash(tmp_path, monkeypatch):
    monkeypatch.setenv("LEADDB_PEERS_CACHE", str(tmp_path))
    monkeypatch.setenv("LEADDB_STATE_DIR", "unchanged")  # the harness sets its own; restored after
    real_which = peers.shutil.which
    monkeypatch.setattr(peers.shutil, "which", lambda name: None if name == "npm" else real_which(name))
    harness = peers.Harness(peers.parse_args(["--only", "apply"]))
    try:
        harness.install_dbmate()
        assert harness.dbmate is None
        assert any("dbmate: skipped, npm is not installed" in n for n in harness.notes)
    finally:
        harness.close()
    assert not harness.state_dir.exists()


# -- one real round ----------------------------------------------------------------------


@pytest.mark.needs_pg_binaries  # the harness runs its own local cluster (and psql beside it)
def test_one_round_of_the_fast_group_measures_ours_and_the_peer(tmp_path, monkeypatch):
    monkeypatch.setenv("LEADDB_STATE_DIR", "unchanged")  # the harness sets its own; restored after
    out = tmp_path / "peers.json"
    argv = ["--runs", "1", "--no-warm-up", "--only", "fast", "--json", str(out), "--results", str(tmp_path)]
    code = peers.main(argv)  # one timed round: the harness runs and reports; the figures are not the point
    assert code == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    for key in (peers.FLOOR, "floor.pass", "fast.whole", "fast.inproc", "fast.dropcreate"):
        assert len(report["samples"][key]) == 1 and report["samples"][key][0] > 0, key
    assert len(report["reported"]["fast.whole"]) == 1  # the command's own phase total was read
    assert "fast.whole / fast.dropcreate" in report["ratios"]
    goal = next(g for g in report["goals"] if g["goal"].startswith("db.reset --fast whole"))
    assert goal["met"] in (True, False)
    assert len(report["load"]["start"]) == 3
    assert sorted(p.suffix for p in tmp_path.glob("*-peers.*")) == [".json", ".md", ".png"]
    assert not Path(report["machine"]["storage"]).exists()  # its cluster is stopped and removed


@pytest.mark.needs_pg_binaries
@pytest.mark.needs_psql  # the bash floor runs createdb and psql
def test_one_round_of_the_reset_group_runs_the_bash_floor_as_the_server_user(tmp_path, monkeypatch):
    """As root (CI), the bash floor's initdb and server run as ``postgres``, with that user's
    groups: the harness's directory must let them in, and no root group may be kept."""
    monkeypatch.setenv("LEADDB_STATE_DIR", "unchanged")  # the harness sets its own; restored after
    out = tmp_path / "peers.json"
    argv = ["--runs", "1", "--no-warm-up", "--only", "reset", "--json", str(out), "--results", str(tmp_path)]
    code = peers.main(argv)  # one timed round: the harness runs and reports; the figures are not the point
    assert code == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    for key in ("reset.whole", "reset.inproc", "reset.bash"):
        assert len(report["samples"][key]) == 1 and report["samples"][key][0] > 0, key
    assert "reset.whole / reset.bash" in report["ratios"]


# -- Docker storage ----------------------------------------------------------------------

MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:25 / /dev/shm rw,nosuid,nodev shared:2 - tmpfs tmpfs rw
41 22 0:40 / /var/lib/leaddb-ci/docker rw,relatime - tmpfs leaddb-ci-docker rw,size=8388608k
42 41 0:41 / /var/lib/leaddb-ci/docker/overlay2 rw - xfs /dev/sdb rw
43 22 0:42 / /mnt/with\\040space rw - btrfs /dev/sdc rw
44 41 0:40 / /var/lib/leaddb-ci/docker rw - overlay overlay rw
"""


def test_filesystem_of_the_longest_mount_holding_the_path(tmp_path):
    info = tmp_path / "mountinfo"
    info.write_text(MOUNTINFO, encoding="utf-8", newline="\n")
    assert engine.filesystem_of("/var/lib/docker", info) == "ext4"
    assert (
        engine.filesystem_of("/var/lib/leaddb-ci/docker/volumes", info) == "overlay"
    )  # mounted over: last wins
    assert engine.filesystem_of("/var/lib/leaddb-ci/docker/overlay2/x", info) == "xfs"
    assert engine.filesystem_of("/mnt/with space/data", info) == "btrfs"
    assert engine.filesystem_of("/dev/shmx", info) == "ext4"  # a prefix of the name is not a parent
    assert engine.filesystem_of("/x", tmp_path / "missing") is None


class FakeClient:
    def __init__(self, info: dict, base_url: str) -> None:
        self._info = info
        self.api = types.SimpleNamespace(base_url=base_url)

    def info(self) -> dict:
        return self._info


def test_storage_of_a_local_engine_names_driver_backing_and_host_filesystem(monkeypatch):
    monkeypatch.setattr(engine.socket, "gethostname", lambda: "vm")
    monkeypatch.setattr(engine, "filesystem_of", lambda path: "tmpfs" if path == "/var/lib/x" else None)
    info = {
        "DockerRootDir": "/var/lib/x",
        "Driver": "overlay2",
        "DriverStatus": [["Backing Filesystem", "tmpfs"], ["Supports d_type", "true"]],
        "Name": "vm",
        "OperatingSystem": "Debian GNU/Linux 12 (bookworm)",
        "ServerVersion": "20.10.24",
    }
    found = engine.storage(FakeClient(info, "http+docker://localhost"))
    assert (found.local, found.driver, found.backing_filesystem, found.host_filesystem) == (
        True,
        "overlay2",
        "tmpfs",
        "tmpfs",
    )
    assert "data root /var/lib/x" in found.describe() and "on this host: tmpfs" in found.describe()


def test_storage_of_docker_desktop_or_a_remote_engine_is_not_looked_up_here(monkeypatch):
    monkeypatch.setattr(engine.socket, "gethostname", lambda: "laptop")
    looked = []
    monkeypatch.setattr(engine, "filesystem_of", lambda path: looked.append(path))
    desktop = {"DockerRootDir": "/var/lib/docker", "Driver": "overlayfs", "Name": "docker-desktop"}
    desktop["OperatingSystem"] = "Docker Desktop"
    found = engine.storage(FakeClient(desktop, "http+docker://localnpipe"))
    assert found.local is False and found.host_filesystem is None and looked == []
    assert "engine host docker-desktop is not this machine" in found.describe()
    remote = {"DockerRootDir": "/var/lib/docker", "Driver": "overlay2", "Name": "laptop"}
    assert engine.storage(FakeClient(remote, "http://build-host:2375")).local is False
