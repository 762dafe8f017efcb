"""``correlate_daily`` for many users at once, with the engine run over a stack of users.

On one user's 90 × 30 matrix most of the engine's time is numpy's fixed cost per call, a few µs
each, not arithmetic.  Users of the same shape whose metrics are all present on the same days (one
device: the common case) are stacked users × days × metrics and go through each step together;
the others go through ``correlate`` one at a time.  The results are the same floats as
``correlate``'s: Pearson's sums are the same per-user matrix products (``correlate`` of a matrix
whose metrics share their days calls the same ``_pearson_shared`` on a stack of one), Spearman's
are exact integers, and the rest is element by element or per user.
"""

from __future__ import annotations

__all__ = ["correlate_daily_many", "correlate_many"]

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from pipeline.analytics.correlations import Correlation, _checked, _correlations, _results, correlate, daily_matrix
from pipeline.analytics.correlations.engine import SHORTCUT_Q, _candidates, _pearson_shared
from pipeline.analytics.correlations.primitives import Bools, Floats, _t_pvalues, _t_statistics, _tie_bounds
from pipeline.analytics.series import DailyData

# Users per stack.  The sums of one user take 4 lags × (3·30)² floats, ~0.25 MB: 32 users keep a
# stack's arrays within a few MB, where larger stacks measured no faster.
STACK = 32
Counts = npt.NDArray[np.int32]


def correlate_daily_many(
    windows: Sequence[tuple[DailyData, np.datetime64, np.datetime64]],
    *,
    max_lag: int = 3,
    min_pairs: int = 14,
    max_q: float | None = None,
) -> list[list[Correlation]]:
    """``correlate_daily(daily, start, end, ...)`` for each (daily, start, end), in order."""
    matrices = [daily_matrix(daily, start, end) for daily, start, end in windows]
    return correlate_many(matrices, max_lag=max_lag, min_pairs=min_pairs, max_q=max_q)


def correlate_many(
    matrices: Sequence[tuple[Sequence[str], Floats]],
    *,
    max_lag: int = 3,
    min_pairs: int = 14,
    max_q: float | None = None,
) -> list[list[Correlation]]:
    """``correlate(names, matrix, ...)`` for each (names, matrix), in order."""
    found: list[list[Correlation]] = [[] for _ in matrices]
    names: list[Sequence[str]] = []
    checked: list[Floats] = []
    stacks: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, (own, matrix) in enumerate(matrices):
        x = _checked(own, matrix, max_lag, min_pairs)
        names.append(own)
        checked.append(x)
        days, metrics = x.shape
        present = ~np.isnan(x)
        if metrics >= 2 and days >= 2 and (present == present[:, :1]).all():
            stacks[x.shape].append(i)
        else:
            found[i] = correlate(own, x, max_lag=max_lag, min_pairs=min_pairs, max_q=max_q)
    for (days, _), members in stacks.items():
        lags = min(max_lag, days - 1) + 1
        for first in range(0, len(members), STACK):
            chunk = members[first : first + STACK]
            x = np.stack([checked[i] for i in chunk])
            present = ~np.isnan(x)
            shared, pearson = _pearson_shared(x, present[:, :, 0], lags)
            n = np.broadcast_to(shared[:, :, None, None], pearson.shape)
            whole = present.all()
            rho = _spearman_whole(x, lags) if whole else _spearman(x, present[:, :, 0], lags, n)
            if max_q is not None and SHORTCUT_Q[0] <= max_q < SHORTCUT_Q[1]:
                kept = _significant_many([names[i] for i in chunk], n, rho, pearson, min_pairs, max_q)
                for i, correlations in zip(chunk, kept, strict=True):
                    found[i] = correlations
            else:
                for j, i in enumerate(chunk):
                    found[i] = _results(names[i], n[j], rho[j], pearson[j], min_pairs, max_q)
    return found


def _significant_many(
    names: Sequence[Sequence[str]], n: Floats, rho: Floats, pearson: Floats, min_pairs: int, max_q: float
) -> list[list[Correlation]]:
    """``_results`` with ``max_q`` in SHORTCUT_Q for each user of a stack: the tests that can
    reach q ≤ ``max_q`` are found for all users at once, and only a user that has some goes on to
    ``engine._significant``'s ranking, on the same numbers in the same order, so the same floats.
    Most users have none: for them nothing more is computed."""
    users, lags, metrics, _ = rho.shape
    index = np.arange(metrics)
    wanted = np.broadcast_to(index[:, None] != index, (lags, metrics, metrics)).copy()
    wanted[0] &= index[:, None] < index  # lag 0 is symmetric: each unordered pair once
    tested = (wanted & (n >= min_pairs) & ~np.isnan(rho)).reshape(users, -1)
    bound = max_q * (1 + 1e-9)
    with np.errstate(invalid="ignore"):  # pairs not tested may have n < 2
        t = np.where(tested, np.abs(_t_statistics(rho, n)).reshape(users, -1), 0.0)
    tests = tested.sum(axis=1)
    limit, p_bound = _candidates(t, tests, bound)
    found: list[list[Correlation]] = [[] for _ in range(users)]
    near_user, near_at = np.nonzero(t >= limit[:, None])
    if not near_user.size:
        return found
    flat_n, flat_rho, flat_pearson = (a.reshape(users, -1) for a in (n, rho, pearson))
    p_near = _t_pvalues(flat_rho[near_user, near_at], flat_n[near_user, near_at])
    small = p_near <= p_bound[near_user]
    near_user, near_at, p_near = near_user[small], near_at[small], p_near[small]
    bounds = np.searchsorted(near_user, np.arange(users + 1))
    for user in np.flatnonzero(np.diff(bounds)).tolist():
        at, p_small = near_at[bounds[user] : bounds[user + 1]], p_near[bounds[user] : bounds[user + 1]]
        # engine._significant from here, over this user's tests in their flat order.
        order = np.argsort(p_small, kind="stable")
        scaled = p_small[order] * tests[user] / np.arange(1, p_small.size + 1)
        q_small = np.empty(p_small.size)
        q_small[order] = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
        kept = q_small <= max_q
        at, p, q = at[kept], p_small[kept], q_small[kept]
        found[user] = _correlations(
            names[user],
            at,
            (lags, metrics, metrics),
            flat_n[user, at],
            flat_rho[user, at],
            flat_pearson[user, at],
            p,
            q,
        )
    return found


def _spearman(x: Floats, present: Bools, lags: int, n: Floats) -> Floats:
    """``engine._spearman`` of each user of a stack whose metrics are all present on the days
    ``present`` (users × days) marks: ρ, (users, lags, M, M).

    The same integers as the engine's: u = 2·rank − 1 of each metric among its days whose partner
    day (t + shift) is present, counted along the metric's sorted days, and Σ(s³ − s) over its tie
    groups within those days.  A missing day sorts last (NaN) and counts nothing.
    """
    users, days, metrics = x.shape
    order = np.argsort(x, axis=1)  # the order inside a tie group does not matter: it shares its counts
    position = np.arange(days)[None, :, None]
    start, end = (b.transpose(1, 0, 2) for b in _tie_bounds(np.take_along_axis(x, order, axis=1).transpose(1, 0, 2)))
    valid = position < present.sum(axis=1)[:, None, None]  # this sorted position holds a value
    # Flat positions, worked out once for every shift: np.take on them costs a fraction of
    # take_along_axis, which builds its index arrays on every call.  counts is (users, days + 1,
    # metrics), row k counting the partner days among the first k sorted; a missing day reads row 0.
    user, column = np.arange(users)[:, None, None], np.arange(metrics)
    row0 = user * ((days + 1) * metrics) + column
    before_at = np.where(valid, row0 + start * metrics, row0)
    through_at = np.where(valid, row0 + (end + 1) * metrics, row0)
    partner_at = user * days + order
    inverse = np.empty_like(order)
    np.put_along_axis(inverse, order, np.broadcast_to(position, order.shape), axis=1)
    unsorted_at = (user * days + inverse) * metrics + column
    # Tie groups of 2+ values: their last sorted day, and whose ties they are.
    tie_users, tie_ends, tie_metrics = np.nonzero((end == position) & (start < position) & valid)
    tie_owner = tie_users * metrics + tie_metrics
    tie_before, tie_through = (at[tie_users, tie_ends, tie_metrics] for at in (before_at, through_at))
    counts = np.zeros((users, days + 1, metrics), np.int32)
    shifted = np.zeros((users, days), np.int32)
    ranks: dict[int, tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]] = {}
    for shift in [0, *range(1, lags), *range(-1, -lags, -1)]:
        shifted[:] = 0
        shifted[:, max(0, -shift) : days - max(0, shift)] = present[:, max(0, shift) : days + min(0, shift)]
        np.cumsum(np.take(shifted, partner_at), axis=1, out=counts[:, 1:])
        u = np.take(counts, before_at)
        u += np.take(counts, through_at)
        size = np.take(counts, tie_through).astype(np.int64) - np.take(counts, tie_before)
        ties = np.bincount(tie_owner, size * size * size - size, users * metrics).reshape(users, metrics)
        ranks[shift] = np.take(u, unsorted_at).astype(np.float32), ties
    cross, ties_a, ties_b = np.empty((3, users, lags, metrics, metrics))
    for lag in range(lags):
        (u_a, tie_a), (u_b, tie_b) = ranks[lag], ranks[-lag]
        # Integer sums below 2**24, so float32 holds them exactly, as in the engine.
        cross[:, lag] = np.matmul(u_a[:, : days - lag].transpose(0, 2, 1), u_b[:, lag:])
        ties_a[:, lag], ties_b[:, lag] = tie_a[:, :, None], tie_b[:, None, :]
    cube = n * n * n
    var_a, var_b = cube - n - ties_a, cube - n - ties_b
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = (cross - cube) * 3 / np.sqrt(var_a * var_b)
    rho[(var_a <= 0) | (var_b <= 0)] = np.nan
    return np.clip(rho, -1.0, 1.0)


def _spearman_whole(x: Floats, lags: int) -> Floats:
    """``_spearman`` of a stack with no day missing: ρ, (users, lags, M, M).

    A pair at lag L ranks a over the first days − L days and b over the last days − L, so each
    rank is the rank over every day less what the L days left out count.  With before (values
    below) and through (values up to and equal) over the days kept, u = before + through, and a
    tie group of size s holds s days each with through − before = s, so Σ(s³ − s) is the sum of
    (through − before)² − 1 over the days: the engine's integers, with no search or gather per lag.
    """
    users, days, metrics = x.shape
    values = np.ascontiguousarray(x.transpose(0, 2, 1))  # users × metrics × days
    order = np.argsort(values, axis=2)
    ordered = np.take_along_axis(values, order, axis=2)
    start, end = _tie_bounds(ordered, axis=2)
    below, upto = np.empty((2, users, metrics, days), np.int32)
    np.put_along_axis(below, order, start, axis=2)
    np.put_along_axis(upto, order, end + 1, axis=2)

    def ranked(below: Counts, upto: Counts, kept: slice) -> tuple[npt.NDArray[np.float32], Floats]:
        below, upto = below[:, :, kept], upto[:, :, kept]
        size = upto - below
        return (below + upto).astype(np.float32), (size * size - 1).sum(axis=2).astype(np.float64)

    first = {0: ranked(below, upto, slice(None))}  # a: the first days − lag days
    last = {0: first[0]}  # b: the last days − lag days
    head_below, head_upto, tail_below, tail_upto = below.copy(), upto.copy(), below, upto
    for lag in range(1, lags):
        left_out = values[:, :, days - lag, None]  # a's lag-th day from the end is no longer kept
        head_below -= left_out < values
        head_upto -= left_out <= values
        first[lag] = ranked(head_below, head_upto, slice(0, days - lag))
        left_out = values[:, :, lag - 1, None]  # b's lag-th day from the start
        tail_below -= left_out < values
        tail_upto -= left_out <= values
        last[lag] = ranked(tail_below, tail_upto, slice(lag, days))
    rho = np.empty((users, lags, metrics, metrics))
    for lag in range(lags):
        (u_a, ties_a), (u_b, ties_b) = first[lag], last[lag]
        n = float(days - lag)
        cube = n * n * n
        # Integer sums below 2**24, so float32 holds them exactly, as in the engine.
        cross = np.matmul(u_a, u_b.transpose(0, 2, 1)).astype(np.float64)
        var_a, var_b = (cube - n - ties_a)[:, :, None], (cube - n - ties_b)[:, None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            found = (cross - cube) * 3 / np.sqrt(var_a * var_b)
        rho[:, lag] = np.where((var_a <= 0) | (var_b <= 0), np.nan, found)  # a constant side
    return np.clip(rho, -1.0, 1.0)
