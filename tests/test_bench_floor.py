"""The bench's floor and the tool's own overhead (no engine needed): what the bench prints, and
the bare ``docker run`` creating the very container a reset creates (the shares' arithmetic:
tests/unit/test_stats.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from leaddb import bench, compose, console, stats, views
from leaddb.backends.docker.floor import LABEL
from leaddb.backends.docker.service import ServiceSpec, Twin

REPO = Path(__file__).resolve().parent.parent


def _result(overhead: dict[str, float], machine: dict) -> bench.BenchResult:
    totals = [2.0, 2.2]
    return bench.BenchResult(
        backend="docker",
        runs=[{"total": t, "phases": {}} for t in totals],
        summaries=[stats.Summary.of("fresh boot + apply (total)", totals)],
        targets={"p50": 3.0},
        verdict=[bench.judge("p50", 3.0, totals, [])],
        machine=machine,
        overhead=overhead,
    )


@pytest.mark.parametrize(("share", "status"), [(0.031, "met"), (0.125, "missed by 2.5 points")])
def test_the_bench_prints_the_storage_and_the_overhead_goal(share, status):
    storage = (
        "data root /var/lib/docker, driver overlay2, backing filesystem extfs (as the driver reports it)"
    )
    first = stats.OVERHEAD.format(rm="with rm", how="of the medians")
    second = stats.OVERHEAD.format(rm="without rm", how="of the medians")
    result = _result({first: share, second: share + 0.2}, {"storage": storage})
    with console.console.capture() as captured:
        views.print_bench(result, [], stats.PERCENTILE_METHOD, overhead_goal=stats.OVERHEAD_GOAL)
    text = captured.get()
    assert f"bench (docker) storage: {storage}" in text
    assert text.index("storage:") < text.index("fresh boot + apply (total)")  # a header, above the table
    assert f"{first}: {100 * share:.1f}%" in text and f"{second}: {100 * share + 20:.1f}%" in text
    (row,) = [line for line in text.splitlines() if "tool's own overhead share of a reset" in line]
    assert "10%" in row and f"{100 * share:.1f}%" in row and status in row


def test_without_storage_or_floor_nothing_of_them_is_printed():
    with console.console.capture() as captured:
        views.print_bench(_result({}, {}), [], stats.PERCENTILE_METHOD, overhead_goal=stats.OVERHEAD_GOAL)
    text = captured.get()
    assert "storage:" not in text and "overhead" not in text


class OfflineClient:
    """Enough of docker-py's client for ``create_kwargs``: it talks to no engine."""

    def __init__(self) -> None:
        import docker

        self.api = docker.APIClient(base_url="unix:///nonexistent/docker.sock", version="1.41")


def test_the_bare_run_creates_the_very_container_a_reset_creates_under_names_of_its_own(tmp_path):
    shutil.copy(REPO / "docker-compose.yml", tmp_path / "docker-compose.yml")
    (tmp_path / "api" / "db" / "migrations").mkdir(parents=True)
    service = compose.load_service(tmp_path, project_name="floorcheck", environ={"POSTGRES_PORT": "5999"})
    spec = ServiceSpec(service)
    client = OfflineClient()
    twin = Twin("floorcheck-bare-run-1", "floorcheck_bare-run_", 61234, {LABEL: "floorcheck"})
    ours = spec.create_kwargs(client)
    bare = spec.create_kwargs(client, twin=twin)

    assert bare.pop("name") == "floorcheck-bare-run-1" and ours.pop("name") == spec.container_name
    assert bare.pop("labels") == {LABEL: "floorcheck"}
    assert ours.pop("labels")["com.docker.compose.project"] == "floorcheck"
    assert bare.pop("ports") == {"5432/tcp": ("127.0.0.1", 61234)}
    assert ours.pop("ports") == {"5432/tcp": ("127.0.0.1", 5999)}
    (bare_volume,) = bare.pop("mounts")
    (our_volume,) = ours.pop("mounts")
    assert (
        bare_volume["Source"] == "floorcheck_bare-run_pgdata" and our_volume["Source"] == "floorcheck_pgdata"
    )
    assert bare_volume["Target"] == our_volume["Target"] == "/var/lib/postgresql/data"
    assert bare_volume["VolumeOptions"] == {"Labels": {LABEL: "floorcheck"}}  # made by the engine, labelled
    network = "floorcheck_default"
    assert bare.pop("networking_config")[network]["Aliases"] == ["floorcheck-bare-run-1"]
    assert ours.pop("networking_config")[network]["Aliases"] == [spec.container_name, "postgres"]
    # everything else (environment, command, the migrations bind mount, healthcheck, the
    # network) is the same
    assert bare == ours
    (initdb,) = [b for b in bare["volumes"].values() if b["bind"] == "/docker-entrypoint-initdb.d"]
    assert initdb["mode"] == "ro"
    assert bare["network"] == network and bare["healthcheck"]["Test"][0] == "CMD-SHELL"
