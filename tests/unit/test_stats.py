"""The bench's statistics by their values (issue 17, part 7): percentiles against numpy and
``statistics`` as oracles, the bootstrap interval against its definition and by its coverage,
summaries, the verdict against the spec's targets, the goals, and the overhead's arithmetic."""

from __future__ import annotations

import random
import statistics

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leaddb import stats

VALUES = st.lists(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False), min_size=1, max_size=40
)


def close(expected: float, values=()):
    """Equal but for rounding: interpolating between values of magnitude M (numpy's formula and
    ours differ in the order of operations) rounds at about M x 1e-16, so a result near 0 between
    -1e6 and 1e6 may differ by 1e-10, far below a relative bound of it."""
    scale = max((abs(v) for v in values), default=1.0)
    return pytest.approx(float(expected), rel=1e-9, abs=1e-9 * max(scale, 1.0))


# -- percentile ----------------------------------------------------------------------------


@given(values=VALUES, p=st.integers(min_value=0, max_value=100))
def test_a_percentile_is_numpys_linear_percentile(values, p):
    assert stats.percentile(values, p) == close(np.percentile(values, p, method="linear"), values)


@given(values=VALUES, p=st.floats(min_value=0, max_value=100))
def test_a_fractional_percentile_is_numpys_too(values, p):
    assert stats.percentile(values, p) == close(np.percentile(values, p, method="linear"), values)


@given(values=VALUES.filter(lambda v: len(v) >= 2), p=st.integers(min_value=1, max_value=99))
def test_a_percentile_is_statistics_quantiles_inclusive(values, p):
    """The method the bench names (PERCENTILE_METHOD)."""
    cut = statistics.quantiles(values, n=100, method="inclusive")[p - 1]
    assert stats.percentile(values, p) == close(cut, values)
    assert "method='inclusive'" in stats.PERCENTILE_METHOD


@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),  # rank 1.5: halfway between 2 and 3
        ([4.0, 1.0, 3.0, 2.0], 50, 2.5),  # the order given does not matter
        ([1.0, 2.0, 3.0, 4.0], 0, 1.0),
        ([1.0, 2.0, 3.0, 4.0], 100, 4.0),
        ([1.0, 2.0, 3.0, 4.0], 25, 1.75),  # rank 0.75
        ([10.0, 20.0], 95, 19.5),  # rank 0.95
        ([float(i) for i in range(1, 22)], 95, 20.0),  # 21 values: rank 19 exactly, no interpolation
        ([float(i) for i in range(1, 101)], 99, 99.01),  # rank 98.01
        ([7.0], 99, 7.0),
        ([7.0], 0, 7.0),
        ([3.0, 3.0, 3.0], 50, 3.0),
        ([0.0, 10.0, 100.0], 75, 55.0),  # rank 1.5 between 10 and 100
    ],
)
def test_percentiles_worked_by_hand(values, p, expected):
    assert stats.percentile(values, p) == close(expected)


@pytest.mark.parametrize(("values", "p"), [([], 50), ([1.0], -1), ([1.0], 100.5), ([1.0, 2.0], 101)])
def test_a_percentile_of_nothing_or_out_of_range_is_refused(values, p):
    expected = "a percentile of no values" if not values else f"percentile {p} is outside 0..100"
    with pytest.raises(ValueError) as refused:
        stats.percentile(values, p)
    assert str(refused.value) == expected


def test_the_bounds_themselves_are_percentiles():
    assert stats.percentile([5.0, 1.0], 0) == 1.0
    assert stats.percentile([5.0, 1.0], 100) == 5.0


# -- bootstrap interval --------------------------------------------------------------------


def bootstrap_by_definition(values, p, rounds, seed):
    """The percentile bootstrap, written out with numpy: resample with replacement (the same
    seeded stream), the percentile of each resample, then the 2.5% and 97.5% order statistics."""
    rng = random.Random(seed)
    estimates = np.sort([np.percentile(rng.choices(values, k=len(values)), p) for _ in range(rounds)])
    return estimates[int(0.025 * rounds)], estimates[int(0.975 * rounds) - 1]


@pytest.mark.parametrize("p", [50, 95, 99])
@pytest.mark.parametrize("rounds", [40, 2000])
def test_the_interval_is_the_order_statistics_of_the_resampled_percentiles(p, rounds):
    values = [random.Random(5).uniform(0.4, 1.2) for _ in range(25)]  # distinct: few ties among estimates
    low, high = stats.bootstrap_ci(values, p, rounds=rounds, seed=3)
    expected_low, expected_high = bootstrap_by_definition(values, p, rounds, 3)
    assert (low, high) == (close(expected_low), close(expected_high))


def test_the_default_is_2000_rounds_seeded_and_reproducible():
    rng = random.Random(11)
    values = [rng.uniform(0.5, 1.5) for _ in range(60)]  # distinct enough that each default shows
    first = stats.bootstrap_ci(values, 50)
    assert first == stats.bootstrap_ci(values, 50)  # seeded: the same values, the same interval
    assert first == stats.bootstrap_ci(values, 50, rounds=2000, seed=15)
    assert first != stats.bootstrap_ci(values, 50, rounds=2000, seed=16)
    assert first != stats.bootstrap_ci(values, 50, rounds=2001, seed=15)


def test_two_values_worked_by_hand():
    """Resamples of [1, 2]: (1, 1) a quarter of the time (median 1), (2, 2) a quarter (2), else
    1.5: the 2.5% and 97.5% points of the medians are 1 and 2."""
    assert stats.bootstrap_ci([1.0, 2.0], 50) == (1.0, 2.0)
    assert stats.bootstrap_ci([2.0, 1.0], 50, seed=99) == (1.0, 2.0)


@pytest.mark.parametrize("values", [[4.2], [4.2, 4.2], [4.2] * 30])
def test_one_value_or_equal_values_give_a_point(values):
    for p in (50, 95, 99):
        assert stats.bootstrap_ci(values, p) == (4.2, 4.2)


def test_no_values_are_refused():
    with pytest.raises(ValueError, match="no values"):
        stats.bootstrap_ci([], 50)


@given(values=VALUES, p=st.sampled_from([50, 95, 99]))
def test_the_interval_is_ordered_and_within_the_values(values, p):
    low, high = stats.bootstrap_ci(values, p, rounds=200)
    assert min(values) <= low <= high <= max(values)


def test_the_interval_covers_the_true_median_about_95_percent_of_the_time():
    """Samples of a known distribution (uniform on [0, 1), median 0.5), drawn from a fixed seed:
    the interval of each sample's median covers 0.5 in most, not all, of them."""
    rng = random.Random(20240611)
    samples = [[rng.random() for _ in range(40)] for _ in range(120)]
    covered = 0
    for index, sample in enumerate(samples):
        low, high = stats.bootstrap_ci(sample, 50, rounds=400, seed=index)
        covered += low <= 0.5 <= high
    assert 0.85 * len(samples) <= covered < len(samples)


def test_more_runs_give_a_narrower_interval():
    rng = random.Random(7)
    few = [rng.gauss(1.0, 0.1) for _ in range(10)]
    many = few + [rng.gauss(1.0, 0.1) for _ in range(190)]
    width = [high - low for low, high in (stats.bootstrap_ci(v, 50, rounds=500) for v in (few, many))]
    assert width[1] < width[0] / 2


# -- summary and verdict -------------------------------------------------------------------


# each example runs three bootstraps of 2000 rounds, twice: a few examples say enough
@settings(max_examples=min(15, settings.default.max_examples), deadline=None)
@given(values=VALUES)
def test_a_summary_holds_its_values_figures(values):
    summary = stats.Summary.of("m", values)
    assert (summary.metric, summary.runs) == ("m", len(values))
    assert (summary.minimum, summary.maximum) == (min(values), max(values))
    for p in (50, 95, 99):
        assert getattr(summary, f"p{p}") == close(np.percentile(values, p))
    assert summary.ci95 == {f"p{p}": stats.bootstrap_ci(values, p) for p in (50, 95, 99)}


def test_a_summary_worked_by_hand():
    summary = stats.Summary.of("fresh boot", [float(i) for i in range(1, 101)])
    assert (summary.runs, summary.minimum, summary.maximum) == (100, 1.0, 100.0)
    assert (summary.p50, summary.p95, summary.p99) == (close(50.5), close(95.05), close(99.01))
    assert list(summary.ci95) == ["p50", "p95", "p99"]
    low, high = summary.ci95["p50"]
    assert 40 < low < 50.5 < high < 61


SPEC_TARGETS = {"p99": 15.0, "p50": 3.0, "p95": 10.0}
HUNDRED = [float(i) for i in range(1, 101)]  # p50 50.5, p95 95.05, p99 99.01


def outcomes(totals, targets) -> dict[str, str]:
    """The verdict on each target, without a floor to compare with (local, dsn)."""
    return {p: stats.judge(p, limit, totals, []).outcome for p, limit in sorted(targets.items())}


def test_the_verdict_holds_each_percentile_against_its_target():
    assert outcomes([0.5, 0.6, 0.7], SPEC_TARGETS) == dict.fromkeys(SPEC_TARGETS, stats.PASS)
    targets = {"p50": 60.0, "p95": 95.0, "p99": 100.0}
    assert outcomes(HUNDRED, targets) == {"p50": stats.PASS, "p95": stats.MISSED, "p99": stats.PASS}
    targets = {"p50": 50.0, "p95": 96.0, "p99": 99.0}
    assert outcomes(HUNDRED, targets) == {"p50": stats.MISSED, "p95": stats.PASS, "p99": stats.MISSED}


def test_at_the_limit_is_met_and_just_over_is_not():
    assert outcomes([3.0], SPEC_TARGETS) == dict.fromkeys(SPEC_TARGETS, stats.PASS)
    assert outcomes([3.000001], {"p50": 3.0}) == {"p50": stats.MISSED}


def test_a_verdict_carries_its_figures_and_without_a_floor_says_so():
    verdict = stats.judge("p95", 90.0, HUNDRED, [])
    assert (verdict.percentile, verdict.limit, verdict.measured) == ("p95", 90.0, close(95.05))
    assert (verdict.floor, verdict.migrations, verdict.tool) == (None, None, None)
    assert verdict.why.startswith("p95 ")
    assert "this backend has no bare boot to compare with" in verdict.why
    passed = stats.judge("p95", 96.0, HUNDRED, [])
    assert (passed.outcome, passed.why) == (stats.PASS, "")


def test_a_median_ratio():
    assert stats.median_ratio([1.0, 3.0, 2.0], [4.0, 2.0]) == close(2.0 / 3.0)
    assert stats.median_ratio([10.0], [2.5]) == 4.0


# -- goals ---------------------------------------------------------------------------------


def test_the_goals_of_each_backend():
    """The fresh boot's goal is the backend's capability, never looked up by its name."""
    from leaddb.backends.docker import DockerBackend
    from leaddb.backends.dsn import DsnBackend
    from leaddb.backends.local import LocalBackend

    common = [("apply only", "p95", 0.25), ("reapply", "p95", 0.06), ("fast reset", "p95", 0.1)]
    goal = {
        cls: stats.goals_for(cls.capabilities.fresh_boot_goal)
        for cls in (LocalBackend, DockerBackend, DsnBackend)
    }
    assert goal[LocalBackend] == [("fresh boot + apply (total)", "p95", 1.8), *common]
    assert goal[DockerBackend] == [("fresh boot + apply (total)", "p95", 3.0), *common]
    assert goal[DsnBackend] == common  # a shared server's boot is not ours to time
    assert stats.OVERHEAD_GOAL == 0.10


# -- the floor and the tool's own overhead ------------------------------------------------

LABEL = "bare docker run"


def record(total: float, boot: float, remove: float) -> dict:
    return {"total": total, "floor": {"label": LABEL, "boot": boot, "remove": remove}}


def test_overhead_shares_from_the_medians_and_from_each_runs_pair():
    records = [record(3.0, 2.4, 0.3), record(2.0, 1.7, 0.1), record(4.0, 3.9, 0.2)]
    totals = [r["total"] for r in records]
    shares = stats.overhead_shares(totals, records)
    assert list(shares) == [
        "tool's own overhead, (reset - floor) / reset, floor with rm, of the medians",
        "tool's own overhead, (reset - floor) / reset, floor with rm, median of each run's own",
        "tool's own overhead, (reset - floor) / reset, floor without rm, of the medians",
        "tool's own overhead, (reset - floor) / reset, floor without rm, median of each run's own",
    ]
    with_rm, with_rm_paired, without_rm, without_rm_paired = shares.values()
    assert with_rm == close((3.0 - 2.7) / 3.0)  # medians 3.0 and 2.7 (2.4 + 0.3)
    assert without_rm == close((3.0 - 2.4) / 3.0)
    assert with_rm_paired == close(
        statistics.median([(3.0 - 2.7) / 3.0, (2.0 - 1.8) / 2.0, (4.0 - 4.1) / 4.0])
    )
    assert without_rm_paired == close(statistics.median([(3.0 - 2.4) / 3.0, (2.0 - 1.7) / 2.0, 0.1 / 4.0]))


def test_a_runs_floor_figures_under_their_names():
    assert stats.floor_metrics(record(3.0, 2.4, 0.3)) == {
        f"{LABEL}: rm + run + answers": close(2.7),
        f"{LABEL}: run + answers": 2.4,
    }


def test_totals_and_records_of_another_length_are_refused():
    records = [record(3.0, 2.4, 0.3), record(2.0, 1.7, 0.1)]
    with pytest.raises(ValueError, match="zip"):
        stats.overhead_shares([3.0, 2.0, 4.0], records)


def test_no_floor_no_shares():
    assert stats.overhead_shares([1.0], [{"total": 1.0}]) == {}
    assert stats.overhead_shares([], []) == {}
    assert stats.floor_metrics({"total": 1.0}) == {}
    assert stats.floor_metrics({"total": 1.0, "floor": None}) == {}
