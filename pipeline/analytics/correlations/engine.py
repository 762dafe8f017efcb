"""The vectorised engine behind ``correlate``.  Its arrays are indexed [lag, a, b] for "a on day t,
b on day t + lag"; ``correlate`` in ``__init__`` checks the input and builds the results."""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy import special

from pipeline.analytics.correlations.primitives import Bools, Floats, Ints, _t_pvalues, _t_statistics, _tie_bounds

Rank = npt.NDArray[np.unsignedinteger]  # u = 2·rank − 1, see _spearman


def _pearson(x: Floats, present: Bools, lags: int) -> tuple[Floats, Floats]:
    """(n, r), each (lags, M, M): the pair's common days and Pearson r on them (NaN if a side is constant).

    One matrix product per lag gives every masked sum: with m = [x, x², present] (x centred, 0 where
    missing), mᵀ over days t times m over days t + lag holds Σx·y, Σx, Σx², Σy, Σy² and n on each pair's
    common days.  Centring on each metric's own mean keeps Σxy − ΣxΣy/n from cancelling (weight near
    80 kg moving by tenths); any shift leaves r unchanged.
    """
    days, metrics = x.shape
    if (present == present[:, :1]).all():
        n, r = _pearson_shared(x[None], present[None, :, 0], lags)
        return np.broadcast_to(n[0, :, None, None], r.shape[1:]), r[0]
    centred = np.where(present, x - np.where(present, x, 0.0).sum(axis=0) / np.maximum(present.sum(axis=0), 1), 0.0)
    moments = np.concatenate([centred, centred * centred, present], axis=1)
    sums = np.stack([moments[: days - lag].T @ moments[lag:] for lag in range(lags)]).reshape(lags, 3, metrics, 3, -1)
    value, square, one = 0, 1, 2
    n, sum_a, sum_b = sums[:, one, :, one], sums[:, value, :, one], sums[:, one, :, value]
    with np.errstate(divide="ignore", invalid="ignore"):
        cov = sums[:, value, :, value] - sum_a * sum_b / n
        var = (sums[:, square, :, one] - sum_a**2 / n) * (sums[:, one, :, square] - sum_b**2 / n)
        return n, np.clip(cov / np.sqrt(var), -1.0, 1.0)


def _pearson_shared(x: Floats, present: Bools, lags: int) -> tuple[Floats, Floats]:
    """``_pearson`` of a stack of users whose metrics are all present on the same days: x is
    (users, days, M) and ``present`` (users, days).  Returns (n, r): n (users, lags), the common
    days of every pair, and r (users, lags, M, M).

    Every pair of a lag has the same common days, so each side is centred on its mean over them and
    one product per lag gives Σab; Σa² and Σb² are sums along the days.  A ninth of the general
    product's work, and the two-pass sums are the textbook's most accurate way to Pearson's r.
    """
    users, days, metrics = x.shape
    n = np.empty((users, lags))
    r = np.empty((users, lags, metrics, metrics))
    whole = present.all()  # the usual case: no day missing, so no masking at all
    # Metrics × days, so every sum runs along contiguous memory (numpy sums a strided axis one by
    # one, a contiguous one pairwise: other floats); a missing day's NaN becomes 0.
    values = np.ascontiguousarray(x.transpose(0, 2, 1))
    if not whole:
        values[~np.broadcast_to(present[:, None, :], values.shape)] = 0.0
    for lag in range(lags):
        common = present[:, : days - lag] & present[:, lag:]
        n[:, lag] = common.sum(axis=1)
        count = np.maximum(n[:, lag], 1)[:, None, None]
        a, b = values[:, :, : days - lag], values[:, :, lag:]
        if not whole:  # only the common days count: each side is 0 on the others
            a, b = a * common[:, None, :], b * common[:, None, :]
        a = a - a.sum(axis=2, keepdims=True) / count
        b = b - b.sum(axis=2, keepdims=True) / count
        if not whole:
            a *= common[:, None, :]
            b *= common[:, None, :]
        spread = np.sqrt(np.einsum("umt,umt->um", a, a)[:, :, None] * np.einsum("umt,umt->um", b, b)[:, None, :])
        with np.errstate(divide="ignore", invalid="ignore"):
            r[:, lag] = np.matmul(a, b.transpose(0, 2, 1)) / spread
    return n, np.clip(r, -1.0, 1.0)


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


# The max_q for which _significant is used.  Below 1e-12 a p-value could underflow to 0 short of
# the normal quantile; from 0.5 up most tests qualify and the shortcut saves nothing.
SHORTCUT_Q: Final = (1e-12, 0.5)


def _significant(rho: Floats, n: Floats, max_q: float) -> tuple[Bools, Floats, Floats]:
    """(keep, p, q) of the tests with q ≤ ``max_q`` (within SHORTCUT_Q): the same floats as
    ``benjamini_hochberg(_t_pvalues(rho, n))[1] <= max_q`` picks, for a few of the t-tail calls.

    The t tail (``special.stdtr``) costs ~0.2 µs a test, ~0.5 ms for 30 metrics, where the rest of
    the engine takes ~1 ms; most tests are nowhere near significant.  With m tests sorted by p,
    q_k = min over j ≥ k of p_(j)·m/j.  ``_candidates`` finds, from |t| alone, a p-value bound that
    every test deciding a kept q lies under; the tests under it are the first ranks of the full
    order, and their p, ranks and q come out as the full computation's.
    """
    bound = max_q * (1 + 1e-9)
    t = np.abs(_t_statistics(rho, n))
    limit, p_bound = _candidates(t[None], np.array([rho.size]), bound)
    near = np.flatnonzero(t >= limit[0])
    p_near = _t_pvalues(rho[near], n[near])
    small = p_near <= p_bound[0]
    lowest, p_small = near[small], p_near[small]
    order = np.argsort(p_small, kind="stable")  # ties keep the index order, as the full sort does
    scaled = p_small[order] * rho.size / np.arange(1, p_small.size + 1)
    q_small = np.empty(p_small.size)
    q_small[order] = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    kept = q_small <= max_q
    keep = np.zeros(rho.shape, bool)
    keep[lowest[kept]] = True
    return keep, p_small[kept], q_small[kept]


def _candidates(t: Floats, tests: Ints, bound: float) -> tuple[Floats, Floats]:
    """Per row of |t| (users × tests; NaN or 0 where a test is not made) and its user's number of
    tests m: (the least |t|, the greatest p) of a test that can decide a q ≤ ``bound``.  A user
    with none gets an infinite |t| and a p bound of 0.

    If the test of rank j has p_(j)·m/j ≤ bound, the j tests up to it have p ≤ bound·j/m, so
    j ≤ S(bound·j/m), S(b) counting the tests with p ≤ b.  A t tail is heavier than the normal
    one, so p ≤ b needs |t| at least the normal quantile of b/2 (less 0.1 % for rounding): N(b),
    the tests with that |t|, is at least S(b).  Starting from j ≤ N(bound), each j ≤ N_k gives
    j ≤ S(bound·N_k/m) ≤ N(bound·N_k/m) = N_{k+1}, and the counts only fall; where they settle,
    every such test has p ≤ bound·N/m.  For the analytics bench's users (2,842 tests each, q ≤
    0.05) N goes ~150 → ~11 → ~1 → 0, and 87% of them need no t tail at all.
    """
    m = np.maximum(tests, 1).astype(np.float64)
    count = tests.astype(np.float64)
    while True:
        p_bound = bound * count / m
        limit = -special.ndtri(p_bound / 2) * 0.999  # ndtri(0) = −inf: no test qualifies
        found = (t >= limit[:, None]).sum(axis=1)
        if (found == count).all():
            return limit, p_bound
        count = found.astype(np.float64)


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
