"""The bench's statistics, without a server: percentiles, bootstrap intervals, summaries, the
verdict against the spec's targets (a miss split into the image's bare boot, what the migrations
add and what the tool adds, and told apart when this machine's own floor misses it), the team's
goals, and the tool's own overhead against the floor (the same boot done by hand).

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


def median_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    """How many times the median of ``numerator`` is the median of ``denominator``."""
    return statistics.median(numerator) / statistics.median(denominator)


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

    # shown only when it rounds to 1 ms or more: 0.5 ms itself rounds (half to even) to "0 ms"
    return seconds(value) if value > 0.0005 else "nothing measurable"


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
# is (a local cluster, a container): the backend's ``capabilities.fresh_boot_goal``.
COMMON_GOALS = [("apply only", "p95", 0.250), ("reapply", "p95", 0.060), ("fast reset", "p95", 0.100)]


def goals_for(fresh_boot_goal: float | None) -> list[tuple[str, str, float]]:
    boot = [("fresh boot + apply (total)", "p95", fresh_boot_goal)] if fresh_boot_goal else []
    return boot + COMMON_GOALS
