"""Correlations: the reference vectors V16–V23 (health-analytics §7), then ``correlate`` against scipy."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import numpy as np
import pytest
from scipy import stats

from pipeline.analytics.correlations import (
    Correlation,
    average_ranks,
    benjamini_hochberg,
    correlate,
    correlate_daily,
    critical_r,
    effective_n,
    fisher_ci,
    pearson,
    spearman,
    t_pvalue,
    t_statistic,
)
from pipeline.analytics.series import DailySeries

# Vectors are printed rounded, so each is checked to half a unit in its last printed digit.
ANSCOMBE_X = [10, 8, 13, 9, 11, 14, 6, 4, 12, 7, 5]
ANSCOMBE_Y = [8.04, 6.95, 7.58, 8.81, 8.33, 9.96, 7.24, 4.26, 10.84, 4.82, 5.68]


# V16
def test_anscombe_set_one_has_pearson_0_81642_with_p_0_00217_and_spearman_0_81818() -> None:
    r = pearson(ANSCOMBE_X, ANSCOMBE_Y)
    assert r == pytest.approx(0.81642, abs=5e-6)
    assert t_pvalue(r, 11) == pytest.approx(0.00217, abs=5e-6)
    assert spearman(ANSCOMBE_X, ANSCOMBE_Y) == pytest.approx(0.81818, abs=5e-6)


# V17
def test_iq_against_tv_hours_has_rho_minus_29_over_165_with_p_0_6272() -> None:
    rho = spearman([106, 100, 86, 101, 99, 103, 97, 113, 112, 110], [7, 27, 2, 50, 28, 29, 20, 12, 6, 17])
    assert rho == pytest.approx(-29 / 165, abs=1e-12)
    assert t_pvalue(rho, 10) == pytest.approx(0.6272, abs=5e-5)


# V18
def test_tied_values_share_their_average_rank_and_rho_is_0_948683() -> None:
    assert average_ranks([1, 2, 2, 3]).tolist() == [1, 2.5, 2.5, 4]
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(0.948683, abs=5e-7)


# V19
@pytest.mark.parametrize(("n", "expected"), [(14, 0.5324), (30, 0.3610), (90, 0.2072)])
def test_critical_r_at_alpha_0_05_matches_the_reference(n: int, expected: float) -> None:
    assert critical_r(n) == pytest.approx(expected, abs=5e-5)


# V20
def test_benjamini_hochberg_rejects_and_adjusts_like_the_reference() -> None:
    reject, adjusted = benjamini_hochberg([0.50, 0.01, 0.001, 0.69, 0.02, 0.05, 0.0025], q=0.05)
    assert reject.tolist() == [False, True, True, False, True, False, True]
    assert adjusted == pytest.approx([0.58333, 0.02333, 0.007, 0.69, 0.035, 0.07, 0.00875], abs=5e-6)


# V21
@pytest.mark.filterwarnings("error")
def test_y_built_from_yesterdays_x_correlates_perfectly_at_lag_one_only() -> None:
    x = np.array([3, 1, 4, 1, 5, 9, 2, 6, 5, 3], dtype=float)
    y = np.r_[10, 2 * x[:-1] + 10]
    found = {(c.a, c.b, c.lag_days): c for c in correlate(["x", "y"], np.c_[x, y], max_lag=1, min_pairs=4)}
    lagged = found["x", "y", 1]
    assert (lagged.n, lagged.spearman, lagged.pearson, lagged.p, lagged.ci) == (9, 1.0, 1.0, 0.0, (1.0, 1.0))
    assert found["x", "y", 0].pearson == pytest.approx(-0.0718, abs=5e-5)
    assert found["y", "x", 1].spearman < 0.5  # y leading x is a different, weaker question


# V22
def test_fisher_interval_t_and_p_for_r_0_5_on_30_pairs() -> None:
    assert fisher_ci(0.5, 30) == pytest.approx((0.1704, 0.7290), abs=5e-5)
    assert t_statistic(0.5, 30) == pytest.approx(3.0551, abs=5e-5)
    assert t_pvalue(0.5, 30) == pytest.approx(0.0049, abs=5e-5)


# V23
def test_effective_n_for_lag_one_autocorrelations_0_6_and_0_5_over_90_days_is_48_46() -> None:
    assert effective_n(90, 0.6, 0.5) == pytest.approx(48.46, abs=5e-3)


@pytest.mark.filterwarnings("error")
def test_perfect_correlations_give_p_zero_and_a_degenerate_interval_without_warnings() -> None:
    assert (t_pvalue(1.0, 10), t_pvalue(-1.0, 10)) == (0.0, 0.0)
    assert (fisher_ci(1.0, 10), fisher_ci(-1.0, 10)) == ((1.0, 1.0), (-1.0, -1.0))
    x = np.arange(20.0)
    [found] = correlate(["up", "down"], np.c_[x, -x], max_lag=0)
    assert (found.spearman, found.pearson, found.p, found.ci) == (-1.0, -1.0, 0.0, (-1.0, -1.0))


def _gappy_matrix(days: int, metrics: int, gaps: str, seed: int) -> np.ndarray:
    """Skewed and integer (tied) metrics with gaps: per metric at random, shared by one device, or two devices."""
    rng = np.random.default_rng(seed)
    matrix = rng.lognormal(size=(days, metrics)) + 0.5 * rng.normal(size=(days, 1))  # related, skewed
    matrix[:, ::3] = np.round(matrix[:, ::3] * 2)  # integer metrics tie often, like resting HR
    if gaps == "per metric":
        matrix[rng.random(matrix.shape) < 0.2] = np.nan
    else:
        devices = 1 if gaps == "one device" else 2
        worn = rng.random((days, devices)) < 0.8
        matrix[~worn[:, np.arange(metrics) % devices]] = np.nan
    return matrix


@pytest.mark.parametrize(
    ("days", "metrics", "gaps"),
    # Each takes a different route: 16 patterns (one lag at a time), 1 (a matrix product), 2, and
    # more than 127 days (16-bit counts).
    [(90, 16, "per metric"), (90, 8, "one device"), (90, 8, "two devices"), (200, 5, "per metric")],
)
def test_correlate_equals_scipy_pair_by_pair(days: int, metrics: int, gaps: str) -> None:
    matrix = _gappy_matrix(days, metrics, gaps, seed=days + metrics + len(gaps))
    names = [f"m{i}" for i in range(metrics)]
    found = {(c.a, c.b, c.lag_days): c for c in correlate(names, matrix)}
    expected = {}
    for lag in range(4):
        for a in range(metrics):
            for b in range(a + 1 if lag == 0 else 0, metrics):
                x, y = matrix[: days - lag, a], matrix[lag:, b]
                both = ~np.isnan(x) & ~np.isnan(y)
                if a != b and both.sum() >= 14:
                    expected[names[a], names[b], lag] = (x[both], y[both])
    assert found.keys() == expected.keys()
    for key, (x, y) in expected.items():
        rho = stats.spearmanr(x, y)
        half = 1.959964 / math.sqrt(x.size - 3)
        ci = (math.tanh(math.atanh(rho.statistic) - half), math.tanh(math.atanh(rho.statistic) + half))
        got = found[key]
        assert got.n == x.size
        assert got.spearman == pytest.approx(rho.statistic, abs=1e-12)
        assert got.pearson == pytest.approx(stats.pearsonr(x, y).statistic, abs=1e-12)
        assert got.p == pytest.approx(rho.pvalue, rel=1e-9, abs=1e-15)
        assert got.ci == pytest.approx(ci, abs=1e-6)


def test_pairs_with_fewer_than_14_common_days_are_left_out() -> None:
    rng = np.random.default_rng(7)
    matrix = rng.normal(size=(90, 3))
    matrix[14:, 2] = np.nan  # c is present on days 0…13 only
    involving_c = {(c.a, c.b, c.lag_days): c.n for c in correlate(["a", "b", "c"], matrix) if "c" in (c.a, c.b)}
    # c then a: c on t ≤ 13 and a on t + lag always there (14 days); a then c: t + lag ≤ 13 (14 − lag).
    assert involving_c == {("a", "c", 0): 14, ("b", "c", 0): 14} | {
        ("c", other, lag): 14 for other in "ab" for lag in (1, 2, 3)
    }


def test_lag_zero_lists_each_pair_once_and_later_lags_both_directions_in_order() -> None:
    matrix = np.random.default_rng(3).normal(size=(30, 3))
    keys = [(c.a, c.b, c.lag_days) for c in correlate(["a", "b", "c"], matrix)]
    both_ways = [(a, b) for a in "abc" for b in "abc" if a != b]
    assert keys == [("a", "b", 0), ("a", "c", 0), ("b", "c", 0)] + [
        (a, b, lag) for lag in (1, 2, 3) for a, b in both_ways
    ]


def test_q_values_adjust_over_every_pair_and_lag_together() -> None:
    found = correlate([f"m{i}" for i in range(6)], _gappy_matrix(90, 6, "per metric", seed=11))
    p = [c.p for c in found]
    assert [c.q for c in found] == pytest.approx(benjamini_hochberg(p)[1].tolist(), abs=1e-15)
    lag_zero = [c for c in found if c.lag_days == 0]
    per_lag = benjamini_hochberg([c.p for c in lag_zero])[1]
    assert any(c.q != pytest.approx(q, abs=1e-12) for c, q in zip(lag_zero, per_lag, strict=True))


@pytest.mark.filterwarnings("error")
def test_a_constant_metric_is_dropped_silently() -> None:
    matrix = np.random.default_rng(5).normal(size=(40, 3))
    matrix[:, 1] = 7.0
    matrix[::5, 1] = np.nan
    assert {(c.a, c.b) for c in correlate(["a", "flat", "c"], matrix, max_lag=1)} == {("a", "c"), ("c", "a")}


def _one(rho: float, lag: int, n: int, q: float) -> Correlation:
    return Correlation("sleep_duration", "hrv_rmssd", lag, n, rho, rho, q, q, (rho - 0.2, rho + 0.2))


@pytest.mark.parametrize(
    ("rho", "lag", "q", "sentence"),
    [
        (
            0.42,
            1,
            0.003,
            "Higher sleep_duration goes with higher hrv_rmssd the next day (moderate, ρ = 0.42, n = 41, q = 0.003).",
        ),
        (  # 0.5 ≤ |ρ| < 0.7 is "strong" on our scale, even though 0.52 is often called moderate
            0.52,
            1,
            0.003,
            "Higher sleep_duration goes with higher hrv_rmssd the next day (strong, ρ = 0.52, n = 41, q = 0.003).",
        ),
        (
            -0.75,
            0,
            0.0004,
            "Higher sleep_duration goes with lower hrv_rmssd the same day (very strong, ρ = -0.75, n = 41, q < 0.001).",
        ),
        (
            0.05,
            2,
            0.9,
            "Higher sleep_duration goes with higher hrv_rmssd 2 days later (negligible, ρ = 0.05, n = 41, q = 0.900).",
        ),
        (
            -0.3,
            3,
            0.04,
            "Higher sleep_duration goes with lower hrv_rmssd 3 days later (moderate, ρ = -0.30, n = 41, q = 0.040).",
        ),
        (
            0.29,
            0,
            0.2,
            "Higher sleep_duration goes with higher hrv_rmssd the same day (weak, ρ = 0.29, n = 41, q = 0.200).",
        ),
        (
            0.69,
            0,
            0.01,
            "Higher sleep_duration goes with higher hrv_rmssd the same day (strong, ρ = 0.69, n = 41, q = 0.010).",
        ),
    ],
)
def test_describe_says_direction_timing_and_strength_in_plain_words(
    rho: float, lag: int, q: float, sentence: str
) -> None:
    assert _one(rho, lag, 41, q).describe() == sentence


def test_as_dict_is_json_ready_with_the_interval_as_a_list() -> None:
    as_dict = _one(0.5, 1, 41, 0.01).as_dict()
    assert list(as_dict) == ["a", "b", "lag_days", "n", "spearman", "pearson", "p", "q", "ci"]
    assert as_dict["ci"] == [pytest.approx(0.3), pytest.approx(0.7)]
    assert json.loads(json.dumps(as_dict)) == as_dict


def test_correlate_daily_builds_the_grid_from_the_window_in_name_order() -> None:
    rng = np.random.default_rng(9)
    start, end = np.datetime64("2025-01-01"), np.datetime64("2025-03-01")
    days = np.arange(start - 5, end + 5)  # readings beyond the window on both sides
    keep = rng.random((3, days.size)) < 0.85
    daily = {
        name: DailySeries(days[keep[i]], rng.normal(size=int(keep[i].sum())))
        for i, name in enumerate(["steps", "hrv_rmssd", "resting_hr"])
    }
    names = sorted(daily)
    grid = np.column_stack([daily[name].on_grid(start, end) for name in names])
    assert correlate_daily(daily, start, end, max_lag=2) == correlate(names, grid, max_lag=2)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: correlate(["a"], np.zeros((5, 2))), "matrix must be"),
        (lambda: correlate(["a", "b"], np.array([[1.0, np.inf]] * 20)), "finite"),
        (lambda: correlate(["a", "b"], np.zeros((20, 2)), min_pairs=3), "min_pairs"),
        (lambda: correlate(["a", "b"], np.zeros((20, 2)), max_lag=-1), "max_lag"),
        (lambda: t_pvalue(0.5, 2), "at least 3"),
        (lambda: fisher_ci(0.5, 3), "at least 4"),
        (lambda: fisher_ci(1.2, 30), r"\[-1, 1\]"),
        (lambda: critical_r(30, alpha=0), "between 0 and 1"),
        (lambda: average_ranks([1.0, np.nan]), "finite"),
        (lambda: pearson([1, 2], [1, 2, 3]), "same length"),
        (lambda: spearman([1.0, np.nan, 3.0], [2.0, 3.0, np.nan]), "2 complete pairs"),
    ],
)
def test_bad_input_raises_value_error_saying_what_is_wrong(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_lags_longer_than_the_window_allows_are_skipped_and_nothing_found_is_an_empty_list() -> None:
    matrix = np.random.default_rng(2).normal(size=(15, 2))
    assert max(c.lag_days for c in correlate(["a", "b"], matrix, max_lag=30, min_pairs=4)) == 11  # 15 − 11 = 4 pairs
    assert correlate(["a", "b"], matrix[:1]) == correlate(["a"], matrix[:, :1]) == []
    assert benjamini_hochberg([])[0].size == benjamini_hochberg([])[1].size == 0


def test_max_q_keeps_only_the_significant_rows_with_q_values_adjusted_over_all_of_them() -> None:
    rng = np.random.default_rng(7)
    matrix = rng.normal(size=(90, 6))
    matrix[:, 1] = matrix[:, 0] * 2 + rng.normal(scale=0.1, size=90)  # one strong pair among noise

    every = correlate([f"m{i}" for i in range(6)], matrix)
    kept = correlate([f"m{i}" for i in range(6)], matrix, max_q=0.05)

    assert kept == [c for c in every if c.q <= 0.05]
    assert ("m0", "m1", 0) in {(c.a, c.b, c.lag_days) for c in kept}


def random_matrix(rng: np.random.Generator) -> np.ndarray:
    """Metrics sharing a few hidden factors, with gaps, ties, a constant and a duplicated column."""
    days, metrics = int(rng.choice([20, 40, 90, 120])), int(rng.integers(2, 31))
    strength = float(rng.choice([0.0, 0.3, 1.0, 3.0]))
    matrix: np.ndarray = rng.normal(size=(days, 3)) @ (rng.normal(size=(3, metrics)) * strength)
    matrix += rng.normal(size=(days, metrics))
    if rng.random() < 0.5:
        matrix = np.round(matrix, int(rng.integers(0, 2)))
    if rng.random() < 0.5:
        matrix[rng.random(matrix.shape) < rng.uniform(0, 0.4)] = np.nan
    if rng.random() < 0.2:
        matrix[:, 0] = 5.0
    if metrics > 2 and rng.random() < 0.3:
        # A copy, or nearly one: p of 0, or so small that a float barely holds it.
        matrix[:, 1] = matrix[:, 2] + rng.choice([0.0, 1e-6, 1e-3]) * rng.normal(size=days)
    return matrix


@pytest.mark.parametrize("max_q", [0.0, 1e-300, 1e-12, 1e-6, 0.01, 0.05, 0.2, 0.49])
def test_max_q_gives_the_rows_and_floats_of_the_full_computation(max_q: float) -> None:
    # With max_q, only tests that can reach q ≤ max_q get an exact p-value: the same floats.
    rng = np.random.default_rng(int(max_q * 100) + len(str(max_q)))
    for _ in range(60):
        matrix = random_matrix(rng)
        names = [f"m{i}" for i in range(matrix.shape[1])]
        min_pairs = int(rng.choice([4, 14]))
        every = correlate(names, matrix, min_pairs=min_pairs)
        kept = correlate(names, matrix, min_pairs=min_pairs, max_q=max_q)
        assert repr(kept) == repr([c for c in every if c.q <= max_q])
