"""Daily aggregates: per metric and local day, avg/min/max/count and rolling 7- and 30-day averages.

A local day is the user's calendar day (its IANA zone), so a reading at 23:30 in Honolulu
counts for that evening, not for the next UTC day.  Rolling averages are the mean of the
daily averages over the trailing 7 (30) calendar days ending on the day, over the days
that have data, so a missing day neither counts as zero nor shifts the window.

Everything is computed on arrays, all metrics at once; row objects are built only on request,
because a user's 90 days hold thousands of them and most callers want a few days.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from db.metrics import Reading
from pipeline.analytics.columns import ReadingColumns
from pipeline.analytics.series import DailyData, DailySeries

ROLLING = (7, 30)
SECONDS_PER_DAY = 86_400
QUARTER_HOUR = 900
MARKED_QUARTERS = 1 << 16  # ~680 days: a 90-day window's readings are marked, a long history sorted
# Rolling sums on a calendar grid of series × days up to 4 M cells (32 MB a grid): a batch of 100
# users' 90 days is ~0.3 M; one series over decades, or far-apart windows, go by search instead.
GRID_CELLS = 1 << 22


@dataclass(frozen=True, slots=True)
class DailyStat:
    metric: str
    day: date
    avg: float
    min: float
    max: float
    count: int
    avg_7d: float
    avg_30d: float

    def as_dict(self) -> dict[str, object]:
        return {
            "metric": self.metric,
            "day": self.day.isoformat(),
            "avg": self.avg,
            "min": self.min,
            "max": self.max,
            "count": self.count,
            "avg_7d": self.avg_7d,
            "avg_30d": self.avg_30d,
        }


@dataclass(frozen=True, slots=True)
class Daily:
    """One row per (metric, local day), as parallel arrays sorted by metric then day."""

    metrics: tuple[str, ...]
    metric: npt.NDArray[np.intp]  # index into ``metrics``
    day: npt.NDArray[np.datetime64]
    avg: npt.NDArray[np.float64]
    low: npt.NDArray[np.float64]
    high: npt.NDArray[np.float64]
    count: npt.NDArray[np.int64]
    avg_7d: npt.NDArray[np.float64]
    avg_30d: npt.NDArray[np.float64]

    @property
    def latest(self) -> date:
        latest: date = self.day.max().astype(date)
        return latest

    @property
    def stats(self) -> tuple[DailyStat, ...]:
        return self.stats_since(None)

    def stats_since(self, first: date | None) -> tuple[DailyStat, ...]:
        """Rows for days on or after ``first`` (all rows for None), rounded for storage and display."""
        return tuple(DailyStat(*row) for row in self.rows_since(first))

    def rows_since(self, first: date | None) -> list[tuple[str, date, float, float, float, int, float, float]]:
        """``stats_since`` as plain tuples of DailyStat's fields, for storage: a frozen object
        per row cost more than the rest of the write's Python work."""
        keep = np.ones(self.day.shape, bool) if first is None else self.day >= np.datetime64(first, "D")
        columns = (self.metric, self.day, self.avg, self.low, self.high, self.count, self.avg_7d, self.avg_30d)
        return [
            (self.metrics[m], d, round(a, 4), lo, hi, c, round(a7, 4), round(a30, 4))
            for m, d, a, lo, hi, c, a7, a30 in zip(*(column[keep].tolist() for column in columns), strict=True)
        ]

    def series(self, which: str) -> DailyData:
        """``which`` is "avg", "low" or "high": one DailySeries per metric."""
        values = {"avg": self.avg, "low": self.low, "high": self.high}[which]
        # As Python ints: slicing with numpy integers costs twice as much.
        bounds = np.searchsorted(self.metric, np.arange(len(self.metrics) + 1)).tolist()
        return {
            name: DailySeries(self.day[start:end], values[start:end])
            for name, start, end in zip(self.metrics, bounds[:-1], bounds[1:], strict=True)
        }

    def matrix(
        self, start: np.datetime64, end: np.datetime64, without: tuple[str, ...] = ()
    ) -> tuple[list[str], npt.NDArray[np.float64]]:
        """(names, days × metrics matrix of the daily averages on ``start``…``end``, NaN where a
        day has none), the metrics but ``without`` in name order: ``daily_matrix`` of ``means``,
        in one scatter from these arrays."""
        names = [name for name in self.metrics if name not in without]
        columns = np.full(len(self.metrics), -1)
        columns[[self.metrics.index(name) for name in names]] = np.arange(len(names))
        days = int((end - start).astype(np.int64)) + 1
        row = self.day.view(np.int64) - start.astype("datetime64[D]").astype(np.int64)
        column = columns[self.metric]
        keep = (row >= 0) & (row < days) & (column >= 0)
        matrix = np.full((days, len(names)), np.nan)
        matrix.put((row * len(names) + column)[keep], self.avg[keep])
        return names, matrix

    @property
    def means(self) -> DailyData:
        return self.series("avg")

    @property
    def minima(self) -> DailyData:
        return self.series("low")

    @property
    def maxima(self) -> DailyData:
        return self.series("high")


def local_days(readings: Sequence[Reading] | ReadingColumns, timezone: str) -> npt.NDArray[np.datetime64]:
    if isinstance(readings, ReadingColumns):
        return _local_days(readings.seconds, ZoneInfo(timezone))
    seconds = np.array([r.recorded_at.timestamp() for r in readings], dtype=np.float64)
    return _local_days(seconds, ZoneInfo(timezone))


def _local_days(seconds: npt.NDArray[np.float64], zone: ZoneInfo) -> npt.NDArray[np.datetime64]:
    # Zone offsets change only at whole quarter hours of UTC (tzdata has no finer transition), so
    # one lookup per distinct quarter hour is exact and costs far fewer calls than one per reading.
    quarter = np.floor(seconds / QUARTER_HOUR)
    first = quarter.min() if quarter.size else 0.0
    span = quarter.max() - first if quarter.size else 0.0
    if span < MARKED_QUARTERS:
        # Distinct quarters by marking them on a range (~10 µs) instead of np.unique's sort
        # (~90 µs for a user's 2,700 readings); the offsets are the very same values.
        at = (quarter - first).astype(np.intp)
        seen = np.zeros(int(span) + 1, bool)
        seen[at] = True
        marked = np.flatnonzero(seen)
        by_quarter = np.zeros(seen.size)
        by_quarter[marked] = [_quarter_offset(zone, q) for q in (marked + first).tolist()]
        offsets = by_quarter[at]
    else:
        quarters, where = np.unique(quarter, return_inverse=True)
        offsets = np.array([_quarter_offset(zone, q) for q in quarters.tolist()])[where]
    days: npt.NDArray[np.datetime64] = np.floor((seconds + offsets) / SECONDS_PER_DAY).astype("datetime64[D]")
    return days


@functools.lru_cache(maxsize=1 << 16)
def _quarter_offset(zone: ZoneInfo, quarter: float) -> float:
    # Remembered across calls: a batch's users share their zones and mostly their reading times
    # (a day's summary lands at the same hour), and a hit costs a sixth of a zone lookup.
    return _offset(datetime.fromtimestamp(quarter * QUARTER_HOUR, zone))


def _offset(moment: datetime) -> float:
    offset = moment.utcoffset()
    return offset.total_seconds() if offset is not None else 0.0


def daily(readings: Sequence[Reading] | ReadingColumns, timezone: str) -> Daily:
    """Aggregate readings into local days; readings may come in any order."""
    columns = readings if isinstance(readings, ReadingColumns) else ReadingColumns.from_readings(readings)
    return daily_many([(columns, timezone)])[0]


def daily_many(users: Sequence[tuple[ReadingColumns, str]]) -> list[Daily]:
    """``daily`` of each (readings, timezone), in order, every user's readings in one pass: a
    user's 90 days are ~2,700 readings, where numpy's cost per call outweighs its cost per item."""
    if not users:  # reduceat has no empty form
        return []
    sizes = [len(columns) for columns, _ in users]
    owner = np.repeat(np.arange(len(users)), sizes)
    seconds = np.concatenate([columns.seconds for columns, _ in users])
    values = np.concatenate([columns.values for columns, _ in users])
    metric = np.concatenate([columns.metric for columns, _ in users])
    days = np.empty(seconds.size, np.int64)
    zones = [timezone for _, timezone in users]
    for timezone in dict.fromkeys(zones):
        # Users of one zone share their offsets' lookups; usually every user of a batch does.
        mine = np.isin(owner, [i for i, zone in enumerate(zones) if zone == timezone])
        days[mine] = _local_days(seconds[mine], ZoneInfo(timezone)).astype(np.int64)

    # One group per (user, metric, day): sort by that key and by value inside it, then reduce each run.
    per_user = max((len(columns.names) for columns, _ in users), default=1)
    series = owner.astype(np.int64) * per_user + metric
    key = series * 1_000_000 + days
    order = _by_key_then_value(key, values)
    key, values = key[order], values[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    count = np.diff(np.r_[starts, key.size])
    avg = np.add.reduceat(values, starts) / count if starts.size else np.empty(0)
    low = values[starts]  # sorted by value inside each group
    high = values[np.r_[starts[1:], key.size] - 1]
    group_series, group_day = np.divmod(key[starts], 1_000_000)
    group_user, group_metric = np.divmod(group_series, per_user)
    rolling = _rolling_means(group_series, group_day, avg)
    bounds = np.searchsorted(group_user, np.arange(len(users) + 1)).tolist()
    found = []
    for (columns, _), first, last in zip(users, bounds[:-1], bounds[1:], strict=True):
        part = slice(first, last)
        found.append(
            Daily(
                columns.names,
                group_metric[part].astype(np.intp),
                group_day[part].astype("datetime64[D]"),
                avg[part],
                low[part],
                high[part],
                count[part].astype(np.int64),
                rolling[7][part],
                rolling[30][part],
            )
        )
    return found


def _by_key_then_value(key: npt.NDArray[np.int64], values: npt.NDArray[np.float64]) -> npt.NDArray[np.intp]:
    """``np.lexsort((values, key))``, cheaply when no key holds more than two readings.

    lexsort took ~0.3 ms for a user's 2,700 readings, a stable argsort of the keys ~0.03 ms.
    With one or two readings per metric and day (daily summaries), ordering each pair by value
    finishes the job: the later reading goes first only when its value is smaller, as lexsort's
    stable order has it.  Values order a group's sum, so this keeps every average's float.
    """
    order = np.argsort(key, kind="stable")
    ordered = key[order]
    second = np.flatnonzero(ordered[1:] == ordered[:-1]) + 1  # a reading after one of its own group
    if second.size and (second[1:] == second[:-1] + 1).any():  # a group of three or more
        found: npt.NDArray[np.intp] = np.lexsort((values, key))
        return found
    swap = second[values[order[second]] < values[order[second - 1]]]
    order[swap - 1], order[swap] = order[swap], order[swap - 1]
    return order


def _rolling_means(
    series: npt.NDArray[np.int64], day: npt.NDArray[np.int64], avg: npt.NDArray[np.float64]
) -> dict[int, npt.NDArray[np.float64]]:
    """Per window, each group's mean of its series' daily averages over (day − window, day], for
    every series (a user's metric) at once: a difference of prefix sums over the count of days in
    between.  Groups are sorted by series, then day.

    The prefix sums run along each series' row of a calendar grid from its first day, a day
    without data adding 0.0, so they are the very floats a cumsum over that series' days alone
    gives, and a window's bounds are a subtraction instead of a search.
    """
    if not day.size:
        return {window: np.empty(0) for window in ROLLING}
    first = np.flatnonzero(np.r_[True, series[1:] != series[:-1]])
    row = np.cumsum(np.r_[False, series[1:] != series[:-1]])
    column = day - day[first][row] + 1  # column 0 is the empty sum before the first day
    width = int(column.max()) + 1
    if first.size * width > GRID_CELLS:
        return _rolling_means_searched(series, day, avg)
    if day.size == first.size * (width - 1):
        # Every series has a value on each of the same number of days (a device worn daily): the
        # groups are the grid already, less its column of zeros, and the days counted are known.
        return _rolling_means_full(avg.reshape(first.size, width - 1))
    cell = row * width + column
    sums = np.zeros((first.size, width))
    days = np.zeros((first.size, width))
    sums.put(cell, avg)
    days.put(cell, 1.0)
    np.cumsum(sums, axis=1, out=sums)
    np.cumsum(days, axis=1, out=days)
    found = {}
    for window in ROLLING:
        # Windows worked out on the whole grid in contiguous slices, read at each group's cell.
        total, count = sums.copy(), days.copy()
        total[:, window:] -= sums[:, :-window]
        count[:, window:] -= days[:, :-window]
        found[window] = np.take(total, cell) / np.take(count, cell)
    return found


def _rolling_means_full(avg: npt.NDArray[np.float64]) -> dict[int, npt.NDArray[np.float64]]:
    """``_rolling_means`` of series × days with no day missing: the same prefix sums, over
    min(day number, window) days.  The grid's leading 0.0 only turns a −0.0 sum into 0.0, and
    adding 0.0 does that here."""
    sums = np.cumsum(avg, axis=1)
    sums += 0.0
    counted = np.arange(1, avg.shape[1] + 1, dtype=np.float64)
    found = {}
    for window in ROLLING:
        total = sums.copy()
        total[:, window:] -= sums[:, :-window]
        found[window] = (total / np.minimum(counted, window)).ravel()
    return found


def _rolling_means_searched(
    series: npt.NDArray[np.int64], day: npt.NDArray[np.int64], avg: npt.NDArray[np.float64]
) -> dict[int, npt.NDArray[np.float64]]:
    """``_rolling_means`` over each series' days alone, the window's start found by a search."""
    key = series * 1_000_000 + day  # sorted and unique
    first = np.flatnonzero(np.r_[True, series[1:] != series[:-1]])
    row = np.cumsum(np.r_[False, series[1:] != series[:-1]])
    position = np.arange(key.size) - first[row]
    rows = np.zeros((first.size, int(position.max()) + 1))
    rows[row, position] = avg
    cumulative = np.concatenate([np.zeros((first.size, 1)), np.cumsum(rows, axis=1)], axis=1)
    end = position + 1
    found = {}
    for window in ROLLING:
        # Days in (day − window, day] of the same series: the search never leaves the series' run.
        start = np.maximum(np.searchsorted(key, key - window + 1, side="left"), first[row]) - first[row]
        found[window] = (cumulative[row, end] - cumulative[row, start]) / (end - start)
    return found
