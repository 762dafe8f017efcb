"""A batch's daily values as arrays, for ``compute_scores_many``: each metric one users × days grid
around each user's day, and the recovery baselines of every user computed on the grids at once.

Read one user at a time, the day's values and the 60-day baselines cost a dozen numpy calls per
metric and user, each mostly overhead on a few dozen numbers; on the grids they are the same calls
once per batch.  Every number is the one the per-user functions give: the same operations on the
same floats, in the same order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from pipeline.analytics.scores.recovery import BASELINE_DAYS, SCALE_FLOOR
from pipeline.analytics.scores.sleep import _NIGHT_METRICS, _sleep_scores
from pipeline.analytics.series import DailyData, Values

# A grid's columns: the BASELINE_DAYS days before the user's day, then the day itself.
WINDOW = BASELINE_DAYS + 1
TODAY = BASELINE_DAYS
Counts = npt.NDArray[np.intp]


def grids(dailies: Sequence[DailyData], ends: npt.NDArray[np.int64], metrics: Sequence[str]) -> dict[str, Values]:
    """Each metric's value for each user (a row) on each day of the window that ends on the user's
    day number in ``ends`` (the columns), NaN where the user has none."""
    users = len(dailies)
    days, values, rows = [], [], []
    for user, daily in enumerate(dailies):
        for m, metric in enumerate(metrics):
            series = daily.get(metric)
            if series is not None:
                days.append(series.days)
                values.append(series.values)
                rows.append(m * users + user)
    # All metrics in one stack of rows, metric by metric: one scatter for the batch.  A day
    # outside its user's window goes to one spare cell past the end.
    size = len(metrics) * users * WINDOW
    found = np.full(size + 1, np.nan)
    if days:
        row = np.repeat(rows, [len(v) for v in values])
        column = np.concatenate(days).astype("datetime64[D]").view(np.int64) - (ends[row % users] - BASELINE_DAYS)
        found[np.where((column >= 0) & (column < WINDOW), row * WINDOW + column, size)] = np.concatenate(values)
    stack = found[:size].reshape(len(metrics), users, WINDOW)
    return dict(zip(metrics, stack, strict=True))


class Baselines(NamedTuple):
    """Per user: the baseline's days, median and scale, as ``recovery.baseline_of`` gives them
    (the median and scale mean nothing for a user without days)."""

    days: list[int]
    median: list[float]
    scale: list[float]


def baselines(rows: Values, floor: float) -> Baselines:
    """``baseline_of`` each row's values that are not NaN."""
    days = np.count_nonzero(~np.isnan(rows), axis=1)
    median = _medians(rows, days)
    scale = np.maximum(1.4826 * _medians(np.abs(rows - median[:, None]), days), floor)
    return Baselines(days.tolist(), median.tolist(), scale.tolist())


def _medians(rows: Values, days: Counts) -> Values:
    """``median_of`` each row's values that are not NaN: sorted, NaN goes last, so the middle of
    each row's values is at the same place as in the row alone."""
    ordered = np.sort(rows, axis=1)
    at, half = np.arange(len(rows)), days // 2
    upper, lower = ordered[at, half], ordered[at, np.maximum(half - 1, 0)]
    # + 0.0 as median_of adds it: -0.0 becomes 0.0, as np.median gives.
    middle: Values = np.where(days % 2 == 1, upper, (lower + upper) / 2) + 0.0
    return middle


def sleep_grids(grids: dict[str, Values]) -> list[Values]:
    """The night's metrics of ``grids`` in SleepNight's order."""
    return [grids[metric] for metric in _NIGHT_METRICS]


def unusual(nights: list[Values]) -> npt.NDArray[np.bool_]:
    """Per user, whether a night of the window has a negative or infinite value: such a user is
    scored alone, where SleepNight refuses the night and names the field."""
    bad = np.zeros(len(nights[0]), dtype=bool)
    for values in nights:
        bad |= ((values < 0) | np.isinf(values)).any(axis=1)
    return bad


def nightly_baselines(nights: list[Values], ages: Sequence[int | None]) -> Baselines:
    """The baseline of each user's nightly sleep scores over the BASELINE_DAYS before the day:
    ``nightly_scores`` of every night with a duration, scored in one call per duration band."""
    window = [values[:, :TODAY] for values in nights]
    scores = np.full(window[0].shape, np.nan)
    older = np.array([age is not None and age >= 65 for age in ages])
    for band, age in ((~older, None), (older, 65)):
        scored = band[:, None] & ~np.isnan(window[0])
        if scored.any():
            duration, efficiency, latency, waso, rem, deep = (values[scored] for values in window)
            scores[scored] = _sleep_scores(duration, efficiency, latency, waso, rem, deep, age)
    return baselines(scores, SCALE_FLOOR["sleep"])


def hrv_baselines(hrv: Values) -> Baselines:
    """The baseline of ln RMSSD over the BASELINE_DAYS before the day, its positive values only."""
    window = hrv[:, :TODAY]
    logs = np.log(window, out=np.full(window.shape, np.nan), where=window > 0)
    return baselines(logs, SCALE_FLOOR["hrv"])
