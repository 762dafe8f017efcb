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

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy import special

from pipeline.analytics.series import DailyData

Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]
Ints = npt.NDArray[np.intp]
Rank = npt.NDArray[np.unsignedinteger]  # u = 2·rank − 1, see _spearman

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
    x = np.asarray(matrix, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(names):
        raise ValueError(f"matrix must be (days, {len(names)}), got {x.shape}")
    if np.isinf(x).any():
        raise ValueError("matrix must hold finite values or NaN")
    if max_lag < 0 or min_pairs < 4:
        raise ValueError("need max_lag >= 0 and min_pairs >= 4")
    if x.shape[0] >= 2**15:  # ranks are counted in 16-bit lanes at most
        raise ValueError("at most 32767 days")
    days, metrics = x.shape
    lags = range(min(max_lag, days - 1) + 1)
    if metrics < 2 or not lags:
        return []
    present = ~np.isnan(x)
    n, pearson = _pearson(x, present, len(lags))
    rho = _spearman(x, present, len(lags), n)
    index = np.arange(metrics)
    wanted = np.broadcast_to(index[:, None] != index, rho.shape).copy()
    wanted[0] &= index[:, None] < index  # lag 0 is symmetric: each unordered pair once
    lag_of, a, b = np.nonzero(wanted & (n >= min_pairs) & ~np.isnan(rho))
    n, rho, pearson = n[lag_of, a, b], rho[lag_of, a, b], pearson[lag_of, a, b]
    p = _t_pvalues(rho, n)
    q = benjamini_hochberg(p)[1]
    low, high = _fisher_cis(rho, n, 0.95)
    if max_q is not None:
        keep = q <= max_q
        a, b, lag_of = a[keep], b[keep], lag_of[keep]
        n, rho, pearson, p, q, low, high = n[keep], rho[keep], pearson[keep], p[keep], q[keep], low[keep], high[keep]
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
    names = sorted(daily)
    columns = [daily[name].on_grid(start, end) for name in names]
    matrix = np.column_stack(columns) if columns else np.empty((0, 0))
    return correlate(names, matrix, max_lag=max_lag, min_pairs=min_pairs, max_q=max_q)


# ---------------------------------------------------------------------------------------------------
# Primitives: one pair or one number at a time.  Each is checked against the reference vectors.


def average_ranks(x: npt.ArrayLike) -> Floats:
    """Ranks 1…n of a 1-D finite array, ties sharing their average rank ([1, 2, 2, 3] → [1, 2.5, 2.5, 4])."""
    values = np.asarray(x, dtype=np.float64)
    if values.ndim != 1 or not np.isfinite(values).all():
        raise ValueError("average_ranks needs a 1-D array of finite values")
    order = np.argsort(values)
    start, end = _tie_bounds(values[order])
    ranks = np.empty(values.size)
    ranks[order] = (start + end) / 2 + 1  # a tie over sorted positions start…end shares their mean rank
    return ranks


def spearman(x: npt.ArrayLike, y: npt.ArrayLike) -> float:
    """Spearman ρ on the pairs where both are present (NaN marks a gap): Pearson r of average ranks.
    NaN when either side is constant there."""
    xs, ys = _complete(x, y)
    return pearson(average_ranks(xs), average_ranks(ys))


def pearson(x: npt.ArrayLike, y: npt.ArrayLike) -> float:
    """Pearson r on the pairs where both are present (NaN marks a gap).  NaN when either side is constant."""
    xs, ys = _complete(x, y)
    dx, dy = xs - xs.mean(), ys - ys.mean()
    denominator = math.sqrt(float(dx @ dx) * float(dy @ dy))
    return max(-1.0, min(1.0, float(dx @ dy) / denominator)) if denominator > 0 else math.nan


def t_statistic(r: float, n: int) -> float:
    """t = r·√((n − 2)/(1 − r²)), ±inf at r = ±1.  Raises ValueError for n < 3 or |r| > 1."""
    return float(_t_statistics(_correlation(r), np.float64(_at_least(n, 3))))


def t_pvalue(r: float, n: int) -> float:
    """Two-sided p for r on n pairs under H0: ρ = 0, from t with n − 2 degrees of freedom (0 at r = ±1).
    Raises ValueError for n < 3 or |r| > 1."""
    return float(_t_pvalues(_correlation(r), np.float64(_at_least(n, 3))))


def fisher_ci(r: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """tanh(atanh r ± z/√(n − 3)), z the two-sided normal quantile (1.959964 at 95 %); (±1, ±1) at r = ±1.
    Raises ValueError for n < 4, |r| > 1 or a level outside (0, 1)."""
    low, high = _fisher_cis(_correlation(r), np.float64(_at_least(n, 4)), _probability(level))
    return float(low), float(high)


def benjamini_hochberg(p: Sequence[float] | Floats, q: float = 0.05) -> tuple[Bools, Floats]:
    """Benjamini–Hochberg step-up at FDR ``q``: (reject, adjusted p), both in input order.

    Adjusted p_(k) = min over j ≥ k of p_(j)·m/j, capped at 1; a hypothesis is rejected when its
    adjusted p is ≤ q, which is the same as rejecting H_(1…k) for the largest k with p_(k) ≤ k·q/m.
    """
    values = np.asarray(p, dtype=np.float64)
    m = values.size
    order = np.argsort(values, kind="stable")
    scaled = values[order] * m / np.arange(1, m + 1)
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    return adjusted <= q, adjusted


def critical_r(n: int, alpha: float = 0.05) -> float:
    """Smallest |r| significant at two-sided ``alpha`` on n pairs: t/√(n − 2 + t²), t the 1 − α/2 quantile.
    Raises ValueError for n < 3 or alpha outside (0, 1)."""
    df = _at_least(n, 3) - 2
    t = float(special.stdtrit(df, 1 - _probability(alpha) / 2))
    return t / math.sqrt(df + t * t)


def effective_n(n: int, rho1: float, rho2: float) -> float:
    """Sample size after autocorrelation (Bretherton et al. 1999): n·(1 − ρ1ρ2)/(1 + ρ1ρ2), where ρ1 and
    ρ2 are the lag-1 autocorrelations of the two series."""
    return n * (1 - rho1 * rho2) / (1 + rho1 * rho2)


# ---------------------------------------------------------------------------------------------------
# The vectorised engine.  Its arrays are indexed [lag, a, b] for "a on day t, b on day t + lag".


def _pearson(x: Floats, present: Bools, lags: int) -> tuple[Floats, Floats]:
    """(n, r), each (lags, M, M): the pair's common days and Pearson r on them (NaN if a side is constant).

    One matrix product per lag gives every masked sum: with m = [x, x², present] (x centred, 0 where
    missing), mᵀ over days t times m over days t + lag holds Σx·y, Σx, Σx², Σy, Σy² and n on each pair's
    common days.  Centring on each metric's own mean keeps Σxy − ΣxΣy/n from cancelling (weight near
    80 kg moving by tenths); any shift leaves r unchanged.
    """
    days, metrics = x.shape
    centred = np.where(present, x - np.where(present, x, 0.0).sum(axis=0) / np.maximum(present.sum(axis=0), 1), 0.0)
    moments = np.concatenate([centred, centred * centred, present], axis=1)
    sums = np.stack([moments[: days - lag].T @ moments[lag:] for lag in range(lags)]).reshape(lags, 3, metrics, 3, -1)
    value, square, one = 0, 1, 2
    n, sum_a, sum_b = sums[:, one, :, one], sums[:, value, :, one], sums[:, one, :, value]
    with np.errstate(divide="ignore", invalid="ignore"):
        cov = sums[:, value, :, value] - sum_a * sum_b / n
        var = (sums[:, square, :, one] - sum_a**2 / n) * (sums[:, one, :, square] - sum_b**2 / n)
        return n, np.clip(cov / np.sqrt(var), -1.0, 1.0)


def _spearman(x: Floats, present: Bools, lags: int, n: Floats) -> Floats:
    """Spearman ρ, (lags, M, M), each pair ranked on its own common days; NaN where a side is constant.

    Ranks are held as u = 2·rank − 1, integers with mean n over the common days, so
    Σ(u_a − n)(u_b − n) = Σu_a·u_b − n³ and Σ(u − n)² = (n³ − n − Σ(s³ − s))/3 over tie groups of size s.
    Every sum is an integer below 2**24, so float32 holds it exactly.  A day outside a pair's common
    days has u = 0 on one side (a missing on t, or b on t + lag), so sums run over all days.
    """
    days, metrics = x.shape
    group, patterns = _presence_groups(present)
    groups = patterns.shape[1]
    ranker = _PartnerRanker(x, present)
    # One pass ranks against every shift when the partner columns fit in a few words (one device: 7).
    # With many patterns, one lag at a time keeps each array near 0.2 MB instead of 0.6 MB: fresh
    # arrays that size are page-faulted in on every call, and that measured slower than the extra passes.
    shifts = [0, *range(1, lags), *range(-1, -lags, -1)]
    passes = [shifts] if len(shifts) * groups <= 64 else [[lag, -lag] if lag else [0] for lag in range(lags)]
    ranked: dict[int, tuple[Rank, Floats]] = {}
    for batch in passes:
        u, ties = ranker.ranks(patterns, batch)
        for i, shift in enumerate(batch):
            ranked[shift] = u[:, :, i * groups : (i + 1) * groups], ties[:, i * groups : (i + 1) * groups]
    cross, ties_a, ties_b = np.empty((3, lags, metrics, metrics))
    for lag in range(lags):
        # a on days t among the days its partner is present on t + lag; b on t + lag, partner on t.
        (u_a, tie_a), (u_b, tie_b) = ranked[lag], ranked[-lag]
        a_side, b_side = u_a[: days - lag], u_b[lag:]
        if groups == 1:  # every metric missing on the same days: one partner, so one matrix product
            cross[lag] = a_side[:, :, 0].T.astype(np.float64) @ b_side[:, :, 0].astype(np.float64)
        else:
            if groups < metrics:
                a_side, b_side = a_side[:, :, group], b_side[:, :, group]
            cross[lag] = np.einsum("tab,tba->ab", a_side, b_side, dtype=np.float32)
        ties_a[lag], ties_b[lag] = tie_a[:, group], tie_b[:, group].T
    cube = n * n * n  # n**3 would call pow() per element, ~10x slower
    var_a, var_b = cube - n - ties_a, cube - n - ties_b
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = (cross - cube) * 3 / np.sqrt(var_a * var_b)
    rho[(var_a <= 0) | (var_b <= 0)] = np.nan
    return np.clip(rho, -1.0, 1.0)


def _presence_groups(present: Bools) -> tuple[Ints, Bools]:
    """(group of each metric, one presence column per group), groups numbered by first appearance.

    Metrics missing on the same days share their partner ranks, so a user whose metrics all come
    from one device needs one partner column instead of thirty.
    """
    if (present == present[:, :1]).all():
        return np.zeros(present.shape[1], np.intp), present[:, :1]
    first: dict[bytes, int] = {}
    group = np.array([first.setdefault(key.tobytes(), len(first)) for key in np.packbits(present, axis=0).T])
    return group, present[:, np.unique(group, return_index=True)[1]]


class _PartnerRanker:
    """Ranks every metric among the days a partner is present, for many partners at once.

    Sort each metric once.  Walking its sorted days, the number of common days so far is a prefix sum
    of the partner's presence taken in that order, and the average rank of a tie group is (count
    before the group + count through it + 1)/2, so u = 2·rank − 1 = before + through.
    """

    def __init__(self, x: Floats, present: Bools) -> None:
        days, metrics = x.shape
        # Counts stay ≤ days and u < 2·days, so bytes do up to 127 days (a 90-day window).
        self.lane: type[np.unsignedinteger] = np.uint8 if days < 128 else np.uint16
        self.step = max(1, math.isqrt(days + 1))
        self.rows = -(-(days + 1) // self.step) * self.step  # row 0 counts nothing; padded to whole steps
        order = np.argsort(x, axis=0)  # NaN sorts last
        position = np.arange(days)[:, None]
        valid = position < present.sum(axis=0)  # this sorted position holds a value
        self.source = np.where(valid, order, days)  # a missing day reads the partner's zero row
        start, end = _tie_bounds(np.take_along_axis(x, order, axis=0))
        column = np.arange(metrics)
        # Row numbers into counts flattened to (rows·M, width); a missing day reads row 0 twice: u = 0.
        before = np.where(valid, start * metrics + column, column)
        through = np.where(valid, (end + 1) * metrics + column, column)
        inverse = np.empty_like(order)
        np.put_along_axis(inverse, order, position, axis=0)
        self.before = np.take_along_axis(before, inverse, axis=0)
        self.through = np.take_along_axis(through, inverse, axis=0)
        # Tie groups of 2+: the metric and the rows of their first and last day (metric-major order).
        cols, ends = np.nonzero(((end == position) & (start < position) & valid).T)
        self.tie_rows = before[ends, cols], through[ends, cols]
        self.tie_firsts = np.flatnonzero(np.r_[True, cols[1:] != cols[:-1]]) if cols.size else cols
        self.tie_metrics = cols[self.tie_firsts]

    def ranks(self, patterns: Bools, shifts: list[int]) -> tuple[Rank, Floats]:
        """(u, ties) against each partner pattern moved by each shift, in columns shift-major.

        ``u[t, c, i·G + g]`` is 2·rank − 1 of metric c on day t among the days where c is present and
        pattern g is present on day t + shifts[i]: 0 where c is missing, meaningless where the partner
        is.  ``ties[c, i·G + g]`` is Σ(s³ − s) over c's tie groups (sizes s) counted within the same days.
        """
        days, groups = patterns.shape
        metrics = self.source.shape[1]
        per_word = 8 // np.dtype(self.lane).itemsize
        width = -(-len(shifts) * groups // per_word) * per_word  # whole uint64 words per row
        partner = np.zeros((days + 1, width), self.lane)  # row `days` stays 0
        for i, shift in enumerate(shifts):
            partner[max(0, -shift) : days - max(0, shift), i * groups : (i + 1) * groups] = patterns[
                max(0, shift) : days + min(0, shift)
            ]
        counts = np.zeros((self.rows, metrics, width), self.lane)
        # mode "raise" (the default) would buffer the output
        np.take(partner, self.source, axis=0, out=counts[1 : days + 1], mode="clip")
        # Prefix sum down the sorted days.  Adding uint64 words adds 8 (or 4) counts at once, and no
        # lane carries into the next because no count exceeds `days`.  numpy's cumsum costs ~3 ns an
        # element: fine for a few partners, but for many, blocks of `step` rows (~2·√days calls) win.
        words = counts.reshape(self.rows // self.step, self.step, -1).view(np.uint64)
        if words.size <= 4096:
            np.cumsum(words.reshape(self.rows, -1), axis=0, out=words.reshape(self.rows, -1))
        else:
            for j in range(1, self.step):
                words[:, j] += words[:, j - 1]
            for i in range(1, self.rows // self.step):
                words[i] += words[i - 1, -1]
        flat = counts.reshape(self.rows * metrics, width)
        u = np.take(flat, self.through, axis=0)
        u += np.take(flat, self.before, axis=0)
        ties = np.zeros((metrics, width))
        if self.tie_metrics.size:
            size = flat[self.tie_rows[1]].astype(np.int64) - flat[self.tie_rows[0]]
            ties[self.tie_metrics] = np.add.reduceat(size * size * size - size, self.tie_firsts, axis=0)
        return u, ties


def _tie_bounds(ordered: Floats) -> tuple[Ints, Ints]:
    """First and last sorted position of each position's tie group, along axis 0 (NaN stands alone)."""
    days = ordered.shape[0]
    position = np.broadcast_to(np.arange(days).reshape(-1, *([1] * (ordered.ndim - 1))), ordered.shape)
    same = ordered[1:] == ordered[:-1]  # NaN == NaN is False
    if not same.any():
        return position, position
    alone = np.zeros_like(same[:1])
    start = np.maximum.accumulate(np.where(np.concatenate([alone, same]), 0, position), axis=0)
    end = np.minimum.accumulate(np.where(np.concatenate([same, alone]), days, position)[::-1], axis=0)[::-1]
    return start, end


def _t_statistics(r: Floats | np.float64, n: Floats | np.float64) -> Floats:
    with np.errstate(divide="ignore"):
        return np.asarray(r * np.sqrt((n - 2) / (1 - np.minimum(r * r, 1.0))), dtype=np.float64)


def _t_pvalues(r: Floats | np.float64, n: Floats | np.float64) -> Floats:
    # stdtr is the t CDF; at r = ±1, t = ±inf and the tail is exactly 0.
    return np.asarray(2 * special.stdtr(n - 2, -np.abs(_t_statistics(r, n))), dtype=np.float64)


def _fisher_cis(r: Floats | np.float64, n: Floats | np.float64, level: float) -> tuple[Floats, Floats]:
    half = float(special.ndtri(0.5 + level / 2)) / np.sqrt(n - 3)
    with np.errstate(divide="ignore"):  # atanh(±1) = ±inf, and tanh brings it back to ±1
        z = np.arctanh(r)
    return np.asarray(np.tanh(z - half), dtype=np.float64), np.asarray(np.tanh(z + half), dtype=np.float64)


def _complete(x: npt.ArrayLike, y: npt.ArrayLike) -> tuple[Floats, Floats]:
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if xs.shape != ys.shape or xs.ndim != 1:
        raise ValueError("x and y must be 1-D and the same length")
    keep = ~(np.isnan(xs) | np.isnan(ys))
    if keep.sum() < 2:
        raise ValueError("need at least 2 complete pairs")
    return xs[keep], ys[keep]


def _correlation(r: float) -> np.float64:
    if not -1 <= r <= 1:
        raise ValueError(f"a correlation lies in [-1, 1], got {r}")
    return np.float64(r)


def _probability(level: float) -> float:
    if not 0 < level < 1:
        raise ValueError(f"expected a value between 0 and 1, got {level}")
    return level


def _at_least(n: int, minimum: int) -> int:
    if n < minimum:
        raise ValueError(f"n must be at least {minimum}, got {n}")
    return n
