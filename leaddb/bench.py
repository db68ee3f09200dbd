"""Benchmark fresh boots and applies; percentiles against the spec's targets.

Per run: a fresh reset (reset → boot → apply → ready), phase by phase; then, on the
running server, the apply-only time (all migrations on a fresh empty database), the
reapply time, and as a baseline in the same run ``psql -f`` per file (what the spec's
manual path does) on another fresh database. Ratios within one run are what to compare:
these machines are noisy. Around it, one job a room: the statistics (percentiles, intervals, the
verdict, the goals, the overhead) are ``leaddb.stats``'s, the baseline's psql is
``leaddb.psql_baseline``'s, the generated schemas ``leaddb.generated``'s, the plots
``leaddb.plots``'s.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from leaddb import fast, janitor, platforms
from leaddb.backends.base import Backend, BootReport
from leaddb.generated import generated_migrations
from leaddb.migrations import Migration
from leaddb.psql_baseline import psql_per_file, psql_program
from leaddb.stats import (  # noqa: F401 - the bench's statistics, where callers have found them
    MIN_RUNS_FOR_P99,
    MISSED,
    MISSED_AT_FLOOR,
    OVERHEAD_GOAL,
    PASS,
    PERCENTILE_METHOD,
    TOOL_SHARE_LIMIT,
    Summary,
    TargetVerdict,
    floor_metrics,
    goals_for,
    judge,
    median_ratio,
    overhead_shares,
    percentile,
)

COLD_BOOT = "fresh boot + apply, cold (initdb, no pristine)"
EXTRA_METRICS = (
    COLD_BOOT,
    "apply only",
    "reapply",
    "psql -f per file",
    "fast reset (builds template)",
    "fast reset",
)


@dataclass
class BenchResult:
    backend: str
    runs: list[dict]
    summaries: list[Summary]
    targets: dict[str, float]
    verdict: list[TargetVerdict]
    machine: dict
    ratios: dict[str, float] = field(default_factory=dict)
    overhead: dict[str, float] = field(default_factory=dict)
    scale: list[dict] = field(default_factory=list)
    method: str = PERCENTILE_METHOD

    @property
    def outcome(self) -> str:
        """``missed`` when any target is (exit 5), else ``missed at this machine's floor`` when
        any is that (exit 0, said prominently), else ``pass``."""
        outcomes = {v.outcome for v in self.verdict}
        return next((o for o in (MISSED, MISSED_AT_FLOOR) if o in outcomes), PASS)

    @property
    def passed(self) -> bool:
        """No target missed that the tool is to blame for (a miss at this machine's floor is
        not one; ``outcome`` tells it apart from a pass)."""
        return self.outcome != MISSED

    def missed(self) -> list[TargetVerdict]:
        return [v for v in self.verdict if v.outcome != PASS]

    def summary(self, metric: str) -> Summary | None:
        return next((s for s in self.summaries if s.metric == metric), None)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=str) + "\n"


def machine_info(backend: Backend) -> dict:
    return {
        "cores": os.cpu_count(),
        "memory_bytes": platforms.physical_memory(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        **backend.server_info(),
    }


def scratch_database(backend: Backend):
    """An empty database on the backend's server for one measurement; yields its name."""
    return janitor.scratch_database(backend.conninfo("postgres"), purpose="bench")


def measure_applies(
    backend: Backend, migrations: Sequence[Migration], *, baseline: str | None
) -> dict[str, float]:
    """Apply-only and reapply with our runner, and psql -f per file (``baseline``: the psql
    program, or None for none), each on a fresh database."""
    sample: dict[str, float] = {}
    with scratch_database(backend) as db:
        sample["apply only"] = backend.apply(migrations, dbname=db).seconds
        sample["reapply"] = backend.apply(migrations, dbname=db, reapply=True).seconds
    if baseline:
        with scratch_database(backend) as db:
            sample["psql -f per file"] = psql_per_file(backend.conninfo(db), migrations, baseline)
    return sample


def run(
    backend: Backend,
    migrations: Sequence[Migration],
    runs: int,
    targets: dict[str, float],
    *,
    on_run: Callable[[int], None] | None = None,
    psql: str | None = None,
) -> BenchResult:
    """Time ``runs`` fresh resets, each followed by the apply measurements and a fast reset.
    ``psql``: the baseline's program when the caller has looked it up (else ``psql_program``)."""
    baseline = psql or psql_program()
    # a shared server is not ours to keep template databases on
    fast_resets = backend.capabilities.owns_server
    records: list[dict] = []
    for i in range(runs):
        floors = {}
        if backend.capabilities.floor_boot:
            floors["floor"] = backend.floor_boot()
            floors["bare floor"] = backend.floor_boot(migrations=False)
        cold: BootReport | None = None
        if backend.capabilities.cached_init:
            # what the first reset pays (after a reboot, a PostgreSQL upgrade): timed in every run,
            # beside the usual reset that reuses what this one built
            backend.drop_init_cache()
            started = time.perf_counter()
            cold = backend.reset(migrations)
            cold_seconds = time.perf_counter() - started
        started = time.perf_counter()
        report: BootReport = backend.reset(migrations)
        record = {
            "total": time.perf_counter() - started,
            "phases": {p.name: p.seconds for p in report.phases},
        }
        if cold is not None:
            record[COLD_BOOT] = cold_seconds
            record["cold phases"] = {p.name: p.seconds for p in cold.phases}
        for key, floor in floors.items():
            record[key] = {
                "label": floor.label,
                "subject": floor.subject,
                "boot": floor.boot,
                "remove": floor.remove,
            }
        record.update(measure_applies(backend, migrations, baseline=baseline))
        if fast_resets:
            # the first fast reset after a full one builds the template; the dev loop pays that once
            for name in ("fast reset (builds template)", "fast reset"):
                started = time.perf_counter()
                fast.reset(backend, migrations)
                record[name] = time.perf_counter() - started
        records.append(record)
        if on_run:
            on_run(i)
    metrics: dict[str, list[float]] = {"fresh boot + apply (total)": [r["total"] for r in records]}
    for name in records[0]["phases"]:
        metrics[f"  phase: {name}"] = [r["phases"].get(name, 0.0) for r in records]
    for name in records[0].get("cold phases", {}):  # what only a cold reset does (initdb)
        if name not in records[0]["phases"]:
            metrics[f"  phase: {name}"] = [r["cold phases"].get(name, 0.0) for r in records]
    for name in EXTRA_METRICS:
        if name in records[0]:
            metrics[name] = [r[name] for r in records]
    for name in floor_metrics(records[0]):
        metrics[name] = [floor_metrics(r)[name] for r in records]
    summaries = [Summary.of(metric, values) for metric, values in metrics.items()]
    ratios = {}
    if "psql -f per file" in metrics:
        ratios["psql -f per file / our apply (median)"] = median_ratio(
            metrics["psql -f per file"], metrics["apply only"]
        )
    if COLD_BOOT in metrics:
        ratios["cold fresh boot (initdb) / warm fresh boot (pristine copy) (median)"] = median_ratio(
            metrics[COLD_BOOT], metrics["fresh boot + apply (total)"]
        )
    totals = metrics["fresh boot + apply (total)"]
    return BenchResult(
        backend=backend.name,
        runs=records,
        summaries=summaries,
        targets=targets,
        verdict=[judge(p, limit, totals, records) for p, limit in sorted(targets.items())],
        machine={**machine_info(backend), "psql_baseline": baseline, "psql_on_path": shutil.which("psql")},
        ratios=ratios,
        overhead=overhead_shares(totals, records),
    )


# -- scale: generated schemas (``leaddb.generated``) ---------------------------------------


def scale(backend: Backend, counts: Sequence[int], *, psql: str | None = None) -> list[dict]:
    """Each generated schema applied by the runner and by ``psql`` (looked up when not given)
    -f per file."""
    psql = psql or psql_program()
    rows = []
    for count in counts:
        with tempfile.TemporaryDirectory(prefix="leaddb-scale-") as tmp:
            files = generated_migrations(Path(tmp), count)
            with scratch_database(backend) as db:
                ours = backend.apply(files, dbname=db).seconds
            row = {"files": count, "runner_s": ours, "runner_ms_per_file": 1000 * ours / count}
            if psql:
                with scratch_database(backend) as db:
                    theirs = psql_per_file(backend.conninfo(db), files, psql)
                row.update(
                    {"psql_s": theirs, "psql_ms_per_file": 1000 * theirs / count, "ratio": theirs / ours}
                )
            rows.append(row)
    return rows


def save(result: BenchResult, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(result.to_json(), encoding="utf-8", newline="\n")
