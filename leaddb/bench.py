"""Benchmark fresh boots: N resets, each run's phases, percentiles against the spec's targets."""

from __future__ import annotations

import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from leaddb.backends.base import Backend, BootReport
from leaddb.migrations import Migration

PERCENTILE_METHOD = "linear interpolation between closest ranks (statistics.quantiles, method='inclusive')"
MIN_RUNS_FOR_P99 = 100


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
    verdict: dict[str, bool]
    machine: dict
    method: str = PERCENTILE_METHOD

    @property
    def passed(self) -> bool:
        return all(self.verdict.values())

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=str) + "\n"


def machine_info(server_version: str | None = None) -> dict:
    memory = None
    if hasattr(os, "sysconf") and "SC_PHYS_PAGES" in os.sysconf_names:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "cores": os.cpu_count(),
        "memory_bytes": memory,
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "postgresql": server_version,
    }


def run(
    backend: Backend,
    migrations: Sequence[Migration],
    runs: int,
    targets: dict[str, float],
    *,
    on_run: Callable[[int, BootReport], None] | None = None,
) -> BenchResult:
    """Time ``runs`` fresh resets (reset → boot → apply → ready)."""
    reports: list[BootReport] = []
    for i in range(runs):
        started = time.perf_counter()
        report = backend.reset(migrations)
        report.wall = time.perf_counter() - started  # type: ignore[attr-defined]
        reports.append(report)
        if on_run:
            on_run(i, report)
    totals = [r.wall for r in reports]  # type: ignore[attr-defined]
    applies = [r.seconds("apply") for r in reports]
    summaries = [Summary.of("fresh boot + apply (total)", totals), Summary.of("apply phase", applies)]
    total = summaries[0]
    verdict = {p: getattr(total, p) <= limit for p, limit in sorted(targets.items())}
    return BenchResult(
        backend=backend.name,
        runs=[
            {"total": r.wall, "phases": {p.name: p.seconds for p in r.phases}}  # type: ignore[attr-defined]
            for r in reports
        ],
        summaries=summaries,
        targets=targets,
        verdict=verdict,
        machine=machine_info(),
    )


def save(result: BenchResult, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(result.to_json(), encoding="utf-8", newline="\n")
