"""One pair or one number at a time, each checked against the reference vectors (§7 V16–V23);
and the array forms of the t test and Fisher interval that the engine shares with them."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy import special

Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]
Ints = npt.NDArray[np.intp]


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


def _tie_bounds(ordered: Floats, axis: int = 0) -> tuple[Ints, Ints]:
    """First and last sorted position of each position's tie group, along ``axis`` (NaN stands alone)."""
    days = ordered.shape[axis]
    shape = [1] * ordered.ndim
    shape[axis] = days
    position = np.broadcast_to(np.arange(days).reshape(shape), ordered.shape)

    def along(part: slice) -> tuple[slice, ...]:
        return tuple(part if i == axis % ordered.ndim else slice(None) for i in range(ordered.ndim))

    same = ordered[along(slice(1, None))] == ordered[along(slice(None, -1))]  # NaN == NaN is False
    if not same.any():
        return position, position
    alone = np.zeros_like(same[along(slice(0, 1))])
    start = np.maximum.accumulate(np.where(np.concatenate([alone, same], axis), 0, position), axis=axis)
    later = np.flip(np.where(np.concatenate([same, alone], axis), days, position), axis)
    end = np.flip(np.minimum.accumulate(later, axis=axis), axis)
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
