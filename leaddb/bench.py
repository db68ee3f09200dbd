"""Benchmark fresh boots and applies; percentiles against the spec's targets.

Per run: a fresh reset (reset → boot → apply → ready), phase by phase; then, on the
running server, the apply-only time (all migrations on a fresh empty database), the
reapply time, and as a baseline in the same run ``psql -f`` per file (what the spec's
manual path does) on another fresh database. Ratios within one run are what to compare:
these machines are noisy.
"""

from __future__ import annotations

import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from leaddb import fast, janitor, platforms, runner
from leaddb.backends.base import Backend, BootReport
from leaddb.errors import LeadDbError
from leaddb.migrations import Migration

PERCENTILE_METHOD = "linear interpolation between closest ranks (statistics.quantiles, method='inclusive')"
MIN_RUNS_FOR_P99 = 100
COLD_BOOT = "fresh boot + apply, cold (initdb, no pristine)"
EXTRA_METRICS = (
    COLD_BOOT,
    "apply only",
    "reapply",
    "psql -f per file",
    "fast reset (builds template)",
    "fast reset",
)


# The floor: the same fresh boot done by hand, without this tool (where the backend has one,
# ``capabilities.floor_boot``), in the same runs, twice: with the migrations mounted (the same
# container a reset makes) and without them (the image's own boot). The tool's own overhead is
# (reset - floor) / reset: from the medians (the goal's figure), and as the median of each run's
# own share (the boots of a run share the machine's load). "with rm": the floor's time includes
# removing its previous boot, as a reset's does (like for like); "without rm": the floor is only
# `docker run` until it answers, and everything a reset removes counts against the tool.
FLOOR_WITH_REMOVAL = "{label}: rm + run + answers"
FLOOR_BOOT_ONLY = "{label}: run + answers"
OVERHEAD = "tool's own overhead, (reset - floor) / reset, floor {rm}, {how}"
OVERHEAD_GOAL = 0.10  # issue 13: the tool's own overhead <= 10% of the fresh-boot total
FLOORS = ("floor", "bare floor")  # a run's records: with the migrations, without them


def floor_metrics(record: dict) -> dict[str, float]:
    """A run's floor figures under their metric names (none when the backend has no floor): the
    floor with the migrations first (rm + run, run), then the bare floor's."""
    figures = {}
    for key in FLOORS:
        floor = record.get(key)
        if floor:
            figures[FLOOR_WITH_REMOVAL.format(label=floor["label"])] = floor["remove"] + floor["boot"]
            figures[FLOOR_BOOT_ONLY.format(label=floor["label"])] = floor["boot"]
    return figures


def overhead_shares(totals: Sequence[float], records: Sequence[dict]) -> dict[str, float]:
    """The tool's own overhead as a share of a reset; the first entry is the goal's figure."""
    if not records or not records[0].get("floor"):
        return {}
    reset = statistics.median(totals)
    shares = {}
    for index, rm in enumerate(("with rm", "without rm")):
        floors = [list(floor_metrics(r).values())[index] for r in records]
        shares[OVERHEAD.format(rm=rm, how="of the medians")] = (reset - statistics.median(floors)) / reset
        shares[OVERHEAD.format(rm=rm, how="median of each run's own")] = statistics.median(
            (total - floor) / total for total, floor in zip(totals, floors, strict=True)
        )
    return shares


# -- the verdict on the spec's targets ---------------------------------------------------------
# A target missed because this machine is slower than the spec's reference machine (4 cores,
# 16 GB, SSD) is told apart from a miss the tool is to blame for. "missed at this machine's
# floor": the bare `docker run` of the same container (migrations included, no tool) misses the
# target too, and the tool adds at most TOOL_SHARE_LIMIT of the reset: no tool could meet it
# here. That outcome is printed prominently and recorded (bench JSON, reports/verify.json), and
# the tasks exit 0 on it; any other miss exits 5 (BENCHMARK_TARGET_MISSED).
PASS = "pass"
MISSED = "missed"
MISSED_AT_FLOOR = "missed at this machine's floor"
TOOL_SHARE_LIMIT = 0.25  # of the reset, at the percentile: 2.5x the team's 10% goal, for noise


@dataclass
class TargetVerdict:
    """One spec target: the reset's percentile against its limit, and why it was missed, split
    into the image's bare boot (``floor``), what the migrations add and what the tool adds (each
    the difference of the same percentile of the like-for-like series, so the three add up to
    ``measured``); the split is None where the backend has no floor."""

    percentile: str
    limit: float
    measured: float
    outcome: str
    floor: float | None = None
    migrations: float | None = None
    tool: float | None = None
    why: str = ""


def _adds(value: float) -> str:
    from leaddb.console import seconds

    return seconds(value) if value >= 0.0005 else "nothing measurable"


def judge(target: str, limit: float, totals: Sequence[float], records: Sequence[dict]) -> TargetVerdict:
    """The verdict on one target, from the resets' totals and each run's floors (when the
    backend has them: ``record["floor"]``, with the migrations, and ``record["bare floor"]``)."""
    from leaddb.console import seconds

    p = float(target.removeprefix("p"))
    measured = percentile(totals, p)
    head = f"{target} {seconds(measured)} > {seconds(limit)}"
    if measured <= limit:
        return TargetVerdict(target, limit, measured, PASS)
    if not records or not records[0].get("floor") or not records[0].get("bare floor"):
        return TargetVerdict(
            target,
            limit,
            measured,
            MISSED,
            why=f"{head}: this backend has no bare boot to compare with, so the miss is the tool's "
            "to explain (see the phases above)",
        )
    figures = [list(floor_metrics(r).values()) for r in records]
    with_migrations = percentile([f[0] for f in figures], p)  # rm + run + answers
    bare = percentile([f[2] for f in figures], p)
    migrations, tool = with_migrations - bare, measured - with_migrations
    subject = records[0]["bare floor"].get("subject") or "server"
    split = (
        f"a bare {subject} boot alone takes {seconds(bare)} here; "
        f"the migrations add {_adds(migrations)}; the tool {_adds(tool)}"
    )
    if with_migrations > limit and tool <= TOOL_SHARE_LIMIT * measured:
        outcome = MISSED_AT_FLOOR
        reason = (
            f"the same container by a bare `docker run` ({seconds(with_migrations)}) misses it too: "
            "this machine is slower than the spec's reference (4 cores, 16 GB, SSD)"
        )
    elif with_migrations > limit:
        outcome = MISSED
        reason = f"the tool adds more than {100 * TOOL_SHARE_LIMIT:.0f}% of the reset"
    else:
        outcome = MISSED
        reason = f"a bare `docker run` of the same container meets it here ({seconds(with_migrations)})"
    return TargetVerdict(
        target, limit, measured, outcome, bare, migrations, tool, why=f"{head}: {split}; {reason}"
    )


# The team's goals on the 2-core CI machine (issue: benchmarks). Reported, never exit-coded:
# only the spec's targets decide the exit code. The fresh boot's goal depends on what a boot
# is (a local cluster, a container).
FRESH_BOOT_GOALS_P95 = {"local": 1.8, "docker": 3.0}
COMMON_GOALS = [("apply only", "p95", 0.250), ("reapply", "p95", 0.060), ("fast reset", "p95", 0.100)]


def goals_for(backend: str) -> list[tuple[str, str, float]]:
    boot = FRESH_BOOT_GOALS_P95.get(backend)
    return ([("fresh boot + apply (total)", "p95", boot)] if boot else []) + COMMON_GOALS


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[int(p) - 1] if p < 100 else ordered[-1]


def bootstrap_ci(
    values: Sequence[float], p: float, *, rounds: int = 2000, seed: int = 15
) -> tuple[float, float]:
    """95% bootstrap confidence interval of the p-th percentile."""
    if len(values) < 2:
        return (values[0], values[0])
    rng = random.Random(seed)
    estimates = sorted(percentile(rng.choices(values, k=len(values)), p) for _ in range(rounds))
    return estimates[int(0.025 * rounds)], estimates[int(0.975 * rounds) - 1]


@dataclass
class Summary:
    metric: str
    runs: int
    minimum: float
    maximum: float
    p50: float
    p95: float
    p99: float
    ci95: dict[str, tuple[float, float]] = field(default_factory=dict)

    @classmethod
    def of(cls, metric: str, values: Sequence[float]) -> Summary:
        return cls(
            metric,
            len(values),
            min(values),
            max(values),
            percentile(values, 50),
            percentile(values, 95),
            percentile(values, 99),
            {f"p{p}": bootstrap_ci(values, p) for p in (50, 95, 99)},
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


def psql_program() -> str | None:
    """The psql the baseline runs: the real binary in ``pg_config --bindir`` when there is one,
    else the first on ``PATH``. On Debian and Ubuntu ``psql`` on PATH is ``pg_wrapper``, a Perl
    script that picks a version and then runs that binary (~50 ms more per start on the
    2-core CI machine, benchmarks/README.md): the binary is the fair baseline. ``None`` when
    neither is there."""
    bindir = platforms.pg_config_bindir()
    if bindir is not None:
        binary = bindir / platforms.executable("psql")
        if binary.is_file() and os.access(binary, os.X_OK):
            return str(binary)
    return shutil.which("psql")


def psql_note(psql: str) -> str:
    """Which psql the baseline is, and what ``psql`` on PATH is when that differs."""
    on_path = shutil.which("psql")
    if on_path is None or Path(on_path).resolve() == Path(psql).resolve():
        return f"psql baseline: {psql}"
    return f"psql baseline: {psql} (the binary; psql on PATH is {on_path} -> {Path(on_path).resolve()})"


def psql_per_file(conninfo: str, migrations: Sequence[Migration], psql: str | None = None) -> float:
    """``psql -X -v ON_ERROR_STOP=1 -f FILE`` once per file, as the manual path does (in a
    session with the runner's pinned settings, as ours: the same schema, the same work)."""
    psql = psql or psql_program()
    if psql is None:
        raise FileNotFoundError("psql")
    params = conninfo_to_dict(runner.session_conninfo(conninfo))
    env = {**os.environ}
    if params.get("password"):  # never on the command line, where `ps` shows it
        env["PGPASSWORD"] = str(params.pop("password"))
    target = make_conninfo(**params)
    started = time.perf_counter()
    for m in migrations:
        done = subprocess.run(
            [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", target, "-f", str(m.path)],
            capture_output=True,
            text=True,
            env=env,
        )
        if done.returncode != 0:
            raise LeadDbError(f"the psql -f baseline failed on {m.name}:\n  {done.stderr.strip()}")
    return time.perf_counter() - started


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
        ratios["psql -f per file / our apply (median)"] = statistics.median(metrics["psql -f per file"]) / (
            statistics.median(metrics["apply only"])
        )
    if COLD_BOOT in metrics:
        ratios["cold fresh boot (initdb) / warm fresh boot (pristine copy) (median)"] = statistics.median(
            metrics[COLD_BOOT]
        ) / statistics.median(metrics["fresh boot + apply (total)"])
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


# -- scale: generated schemas ------------------------------------------------------------


def generated_migrations(directory: Path, count: int) -> list[Migration]:
    """``count`` files, each one transaction creating a table and an index, idempotent; they
    follow the spec's file rules as if they sat in the declared directory."""
    files = []
    for n in range(1, count + 1):
        path = directory / f"{n:04d}_generated_{n}.sql"
        text = (
            f"-- migration: api/db/migrations/{path.name}\n"
            f"BEGIN;\nCREATE TABLE IF NOT EXISTS generated_{n} (\n"
            "    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n"
            "    label text NOT NULL,\n    created_at timestamptz NOT NULL DEFAULT now()\n);\n"
            f"CREATE INDEX IF NOT EXISTS generated_{n}_label_idx ON generated_{n} (label);\nCOMMIT;\n"
        )
        path.write_text(text, encoding="utf-8", newline="\n")
        files.append(Migration(path, n, text))
    return files


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


def plot(result: BenchResult, path: Path) -> None:
    """One box per metric (log scale: phases span milliseconds to seconds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = {"total": [r["total"] for r in result.runs]}
    for name in result.runs[0]["phases"]:
        metrics[name] = [r["phases"].get(name, 0.0) or 1e-4 for r in result.runs]
    for name in EXTRA_METRICS:
        if name in result.runs[0]:
            metrics[name] = [r[name] for r in result.runs]
    for name in floor_metrics(result.runs[0]):
        metrics[name] = [floor_metrics(r)[name] for r in result.runs]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.boxplot([[v * 1000 for v in vs] for vs in metrics.values()], showfliers=True)
    ax.set_xticks(range(1, len(metrics) + 1), list(metrics), rotation=30, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("milliseconds (log)")
    ax.set_title(
        f"leaddb bench: {result.backend}, {len(result.runs)} runs, {result.machine.get('cores')} cores"
    )
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_scale(rows: Sequence[dict], path: Path) -> None:
    """The growth curve: seconds against files, runner and psql -f per file (log-log)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = [r["files"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    ax.plot(files, [r["runner_s"] for r in rows], marker="o", label="leaddb runner (one connection)")
    if all("psql_s" in r for r in rows):
        ax.plot(files, [r["psql_s"] for r in rows], marker="s", label="psql -f per file")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("migration files (a table and an index each)")
    ax.set_ylabel("seconds (log)")
    ax.set_title("apply time as the schema grows")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
