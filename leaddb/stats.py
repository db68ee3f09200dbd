"""The bench's statistics, without a server: percentiles, bootstrap intervals, summaries, the
verdict against the spec's targets, the team's goals, and the tool's own overhead against the
floor (the same boot done by hand).

``leaddb.bench`` times; this module only computes, so its values are tested directly
(``tests/unit/test_stats.py``, against numpy and ``statistics`` as oracles) and mutation-tested.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

PERCENTILE_METHOD = "linear interpolation between closest ranks (statistics.quantiles, method='inclusive')"
MIN_RUNS_FOR_P99 = 100
CONFIDENCE = 0.95
REPORTED = (50, 95, 99)  # the percentiles every summary carries


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0 <= p <= 100) of ``values``: the value at rank
    ``(n - 1) * p / 100`` of the sorted values (counted from 0), interpolated linearly between
    the two closest ranks. That is ``statistics.quantiles(method="inclusive")``, numpy's default
    ``"linear"`` and R's type 7: p0 is the minimum, p100 the maximum."""
    if not values:
        raise ValueError("a percentile of no values")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile {p} is outside 0..100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    below = math.floor(rank)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (rank - below)


def bootstrap_ci(
    values: Sequence[float], p: float, *, rounds: int = 2000, seed: int = 15
) -> tuple[float, float]:
    """The 95% percentile-bootstrap confidence interval of the ``p``-th percentile: ``rounds``
    resamples of ``values`` with replacement (seeded, so a result is reproducible), the
    percentile of each, and the 2.5% and 97.5% order statistics of those estimates. One value
    gives an interval of that value alone."""
    if len(values) < 2:
        return percentile(values, p), percentile(values, p)
    rng = random.Random(seed)
    estimates = sorted(percentile(rng.choices(values, k=len(values)), p) for _ in range(rounds))
    tail = (1 - CONFIDENCE) / 2
    return estimates[int(tail * rounds)], estimates[int((1 - tail) * rounds) - 1]


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
            *(percentile(values, p) for p in REPORTED),
            {f"p{p}": bootstrap_ci(values, p) for p in REPORTED},
        )


def verdict(summary: Summary, targets: dict[str, float]) -> dict[str, bool]:
    """Per target (``{"p95": 10.0, …}``, seconds): whether the summary's percentile is within
    it (at the limit counts as met), in the targets' name order."""
    return {p: getattr(summary, p) <= limit for p, limit in sorted(targets.items())}


def median_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    """How many times the median of ``numerator`` is the median of ``denominator``."""
    return statistics.median(numerator) / statistics.median(denominator)


# The floor: the same fresh boot done by hand, without this tool (where the backend has one,
# ``capabilities.floor_boot``), in the same runs. The tool's own overhead is (reset - floor) /
# reset: from the medians (the goal's figure), and as the median of each run's own share (the
# two boots of a run share the machine's load). "with rm": the floor's time includes removing
# its previous boot, as a reset's does (like for like); "without rm": the floor is only
# `docker run` until it answers, and everything a reset removes counts against the tool.
FLOOR_WITH_REMOVAL = "{label}: rm + run + answers"
FLOOR_BOOT_ONLY = "{label}: run + answers"
OVERHEAD = "tool's own overhead, (reset - floor) / reset, floor {rm}, {how}"
OVERHEAD_GOAL = 0.10  # issue 13: the tool's own overhead <= 10% of the fresh-boot total


def floor_metrics(record: dict) -> dict[str, float]:
    """A run's floor figures under their metric names (none when the backend has no floor)."""
    floor = record.get("floor")
    if not floor:
        return {}
    return {
        FLOOR_WITH_REMOVAL.format(label=floor["label"]): floor["remove"] + floor["boot"],
        FLOOR_BOOT_ONLY.format(label=floor["label"]): floor["boot"],
    }


def overhead_shares(totals: Sequence[float], records: Sequence[dict]) -> dict[str, float]:
    """The tool's own overhead as a share of a reset; the first entry is the goal's figure."""
    if not records or not floor_metrics(records[0]):
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


# The team's goals on the 2-core CI machine (issue: benchmarks). Reported, never exit-coded:
# only the spec's targets decide the exit code. The fresh boot's goal depends on what a boot
# is (a local cluster, a container).
FRESH_BOOT_GOALS_P95 = {"local": 1.8, "docker": 3.0}
COMMON_GOALS = [("apply only", "p95", 0.250), ("reapply", "p95", 0.060), ("fast reset", "p95", 0.100)]


def goals_for(backend: str) -> list[tuple[str, str, float]]:
    boot = FRESH_BOOT_GOALS_P95.get(backend)
    return ([("fresh boot + apply (total)", "p95", boot)] if boot else []) + COMMON_GOALS
