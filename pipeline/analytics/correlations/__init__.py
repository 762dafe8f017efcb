"""Correlations between one user's daily metrics (reference: health-analytics §5, vectors V16–V23).

``correlate`` takes a (days × metrics) matrix with NaN for missing days and, for every pair of
metrics and every lag 0…``max_lag`` days, reports Spearman ρ (average ranks for ties) and Pearson r
on the pair's complete days, a two-sided p-value for ρ from the t distribution, a Benjamini–Hochberg
q-value across every pair × lag of the call, and a Fisher 95 % interval for ρ.  Lag ``k`` means
corr(a_t, b_{t+k}): ``a`` leads.  Lag 0 pairs each unordered pair once (``a`` before ``b`` in
``names``); later lags pair both directions, since "a leads b" and "b leads a" are different questions.

Pairwise-complete Spearman has to re-rank every pair on its own common days, so ranks cannot be
computed once per metric.  ``_PartnerRanker`` does it for all pairs of a lag at once: sort each
metric once, then count, along that order, the days on which the partner is present too.  After
that everything is exact integer arithmetic.  For 30 metrics × 90 days × lags 0–3 the maths costs
~0.6 ms when the metrics share their gaps (one device) and ~1.3–2 ms when every metric has gaps of
its own; building the 3,045 frozen results costs ~4–5 ms more (2-core box; np.corrcoef of 30 × 90
takes ~33 µs there).

The engine is in ``engine``; the one-pair primitives, each checked against the reference
vectors, are in ``primitives``.
"""

from __future__ import annotations

__all__ = [
    "Correlation",
    "average_ranks",
    "benjamini_hochberg",
    "correlate",
    "correlate_daily",
    "critical_r",
    "effective_n",
    "fisher_ci",
    "pearson",
    "spearman",
    "t_pvalue",
    "t_statistic",
]

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from pipeline.analytics.correlations.engine import SHORTCUT_Q, _pearson, _significant, _spearman
from pipeline.analytics.correlations.primitives import (
    Floats,
    _fisher_cis,
    _t_pvalues,
    average_ranks,
    benjamini_hochberg,
    critical_r,
    effective_n,
    fisher_ci,
    pearson,
    spearman,
    t_pvalue,
    t_statistic,
)
from pipeline.analytics.series import DailyData

STRENGTHS: Final = ((0.1, "negligible"), (0.3, "weak"), (0.5, "moderate"), (0.7, "strong"))


@dataclass(frozen=True, slots=True)
class Correlation:
    """corr(a_t, b_{t+lag_days}) on ``n`` paired days.  ``p`` and ``q`` test ρ; ``ci`` is Fisher's 95 % for ρ."""

    a: str
    b: str
    lag_days: int
    n: int
    spearman: float
    pearson: float
    p: float
    q: float
    ci: tuple[float, float]

    def describe(self) -> str:
        """One plain sentence, e.g. "Higher sleep_duration goes with higher hrv_rmssd the next day
        (moderate, ρ = 0.42, n = 41, q = 0.003)."  Strength is by |ρ|; it says nothing about cause."""
        direction = "lower" if self.spearman < 0 else "higher"
        when = {0: "the same day", 1: "the next day"}.get(self.lag_days, f"{self.lag_days} days later")
        strength = next((word for limit, word in STRENGTHS if abs(self.spearman) < limit), "very strong")
        q = "q < 0.001" if self.q < 0.001 else f"q = {self.q:.3f}"
        return (
            f"Higher {self.a} goes with {direction} {self.b} {when}"
            f" ({strength}, ρ = {self.spearman:.2f}, n = {self.n}, {q})."
        )

    def as_dict(self) -> dict[str, object]:
        """JSON-ready: the fields by name, with ``ci`` as a two-item list."""
        return {
            "a": self.a,
            "b": self.b,
            "lag_days": self.lag_days,
            "n": self.n,
            "spearman": self.spearman,
            "pearson": self.pearson,
            "p": self.p,
            "q": self.q,
            "ci": [self.ci[0], self.ci[1]],
        }


def correlate(
    names: Sequence[str],
    matrix: npt.NDArray[np.float64],
    *,
    max_lag: int = 3,
    min_pairs: int = 14,
    max_q: float | None = None,
) -> list[Correlation]:
    """Every metric pair at lags 0…``max_lag`` with at least ``min_pairs`` paired days, lag by lag,
    then by position of ``a`` and ``b`` in ``names``.

    ``matrix`` is (days × metrics), columns in ``names`` order, NaN where a day is missing.  Pairs with
    a series that is constant on their common days (r undefined) are skipped silently, and so are lags
    longer than the window.  The q-values adjust over every pair and lag computed; with ``max_q``
    only those with q ≤ ``max_q`` are returned (building ~3,000 result objects costs more than the
    maths, so callers that keep only the significant ones say so here).
    Raises ValueError for a shape that does not match ``names``, ±inf, ``max_lag`` < 0,
    ``min_pairs`` < 4 (the Fisher interval needs n > 3) or more than 32767 days.
    """
    x = _checked(names, matrix, max_lag, min_pairs)
    days, metrics = x.shape
    lags = range(min(max_lag, days - 1) + 1)
    if metrics < 2 or not lags:
        return []
    present = ~np.isnan(x)
    n, pearson = _pearson(x, present, len(lags))
    rho = _spearman(x, present, len(lags), n)
    return _results(names, n, rho, pearson, min_pairs, max_q)


def _checked(names: Sequence[str], matrix: npt.NDArray[np.float64], max_lag: int, min_pairs: int) -> Floats:
    """``matrix`` as float64, or ValueError as ``correlate`` says."""
    x = np.asarray(matrix, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(names):
        raise ValueError(f"matrix must be (days, {len(names)}), got {x.shape}")
    if np.isinf(x).any():
        raise ValueError("matrix must hold finite values or NaN")
    if max_lag < 0 or min_pairs < 4:
        raise ValueError("need max_lag >= 0 and min_pairs >= 4")
    if x.shape[0] >= 2**15:  # ranks are counted in 16-bit lanes at most
        raise ValueError("at most 32767 days")
    return x


def _results(
    names: Sequence[str], n: Floats, rho: Floats, pearson: Floats, min_pairs: int, max_q: float | None
) -> list[Correlation]:
    """The tests of one matrix, from its (lags, M, M) arrays of pair counts, ρ and r."""
    metrics = len(names)
    rho_shape = rho.shape
    index = np.arange(metrics)
    wanted = np.broadcast_to(index[:, None] != index, rho.shape).copy()
    wanted[0] &= index[:, None] < index  # lag 0 is symmetric: each unordered pair once
    # Flat positions, in np.nonzero's order: one take per array instead of a three-index gather,
    # and (lag, a, b) only for the few tests kept.
    tested = np.flatnonzero(wanted & (n >= min_pairs) & ~np.isnan(rho))
    n, rho, pearson = n.ravel()[tested], rho.ravel()[tested], pearson.ravel()[tested]
    if max_q is not None and SHORTCUT_Q[0] <= max_q < SHORTCUT_Q[1]:
        keep, p, q = _significant(rho, n, max_q)
    else:
        p = _t_pvalues(rho, n)
        q = benjamini_hochberg(p)[1]
        keep = np.ones(p.shape, bool) if max_q is None else q <= max_q
        p, q = p[keep], q[keep]
    return _correlations(names, tested[keep], rho_shape, n[keep], rho[keep], pearson[keep], p, q)


def _correlations(
    names: Sequence[str],
    at: npt.NDArray[np.intp],
    shape: tuple[int, ...],
    n: Floats,
    rho: Floats,
    pearson: Floats,
    p: Floats,
    q: Floats,
) -> list[Correlation]:
    """The results kept, from their flat positions ``at`` in the (lags, M, M) arrays."""
    lag_of, a, b = np.unravel_index(at, shape)
    low, high = _fisher_cis(rho, n, 0.95)
    return [
        Correlation(names[i], names[j], lag, count, r_s, r_p, p_i, q_i, (lo, hi))
        for i, j, lag, count, r_s, r_p, p_i, q_i, lo, hi in zip(
            a.tolist(),
            b.tolist(),
            lag_of.tolist(),
            n.astype(np.intp).tolist(),
            rho.tolist(),
            pearson.tolist(),
            p.tolist(),
            q.tolist(),
            low.tolist(),
            high.tolist(),
            strict=True,
        )
    ]


def correlate_daily(
    daily: DailyData,
    start: np.datetime64,
    end: np.datetime64,
    *,
    max_lag: int = 3,
    min_pairs: int = 14,
    max_q: float | None = None,
) -> list[Correlation]:
    """``correlate`` on the days ``start``…``end`` inclusive, metrics in sorted name order (so the
    result does not depend on how the mapping was built).  Readings outside the window are ignored."""
    names, matrix = daily_matrix(daily, start, end)
    return correlate(names, matrix, max_lag=max_lag, min_pairs=min_pairs, max_q=max_q)


def daily_matrix(daily: DailyData, start: np.datetime64, end: np.datetime64) -> tuple[list[str], Floats]:
    """(sorted names, days × metrics matrix of the days ``start``…``end``, NaN where a day is missing)."""
    names = sorted(daily)
    matrix = np.empty((0, 0))
    if names:
        # Every series' on_grid at once: one scatter instead of a pass per metric.
        series = [daily[name] for name in names]
        days = np.concatenate([s.days for s in series])
        column = np.repeat(np.arange(len(names)), [len(s) for s in series])
        inside = (days >= start) & (days <= end)
        matrix = np.full((int((end - start).astype(int)) + 1, len(names)), np.nan)
        matrix[(days[inside] - start).astype(int), column[inside]] = np.concatenate([s.values for s in series])[inside]
    return names, matrix
