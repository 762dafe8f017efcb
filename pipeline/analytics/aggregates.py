"""Daily aggregates: per metric and local day, avg/min/max/count and rolling 7- and 30-day averages.

A local day is the user's calendar day (its IANA zone), so a reading at 23:30 in Honolulu
counts for that evening, not for the next UTC day.  Rolling averages are the mean of the
daily averages over the trailing 7 (30) calendar days ending on the day, over the days
that have data, so a missing day neither counts as zero nor shifts the window.

Everything is computed on arrays, all metrics at once; row objects are built only on request,
because a user's 90 days hold thousands of them and most callers want a few days.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from db.metrics import Reading
from pipeline.analytics.series import DailyData, DailySeries

ROLLING = (7, 30)
SECONDS_PER_DAY = 86_400
QUARTER_HOUR = 900


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
        keep = np.ones(self.day.shape, bool) if first is None else self.day >= np.datetime64(first, "D")
        columns = (self.metric, self.day, self.avg, self.low, self.high, self.count, self.avg_7d, self.avg_30d)
        return tuple(
            DailyStat(self.metrics[m], d, round(a, 4), lo, hi, c, round(a7, 4), round(a30, 4))
            for m, d, a, lo, hi, c, a7, a30 in zip(*(column[keep].tolist() for column in columns), strict=True)
        )

    def series(self, which: str) -> DailyData:
        """``which`` is "avg", "low" or "high": one DailySeries per metric."""
        values = {"avg": self.avg, "low": self.low, "high": self.high}[which]
        bounds = np.searchsorted(self.metric, np.arange(len(self.metrics) + 1))
        return {
            name: DailySeries(self.day[start:end], values[start:end])
            for name, start, end in zip(self.metrics, bounds[:-1], bounds[1:], strict=True)
        }

    @property
    def means(self) -> DailyData:
        return self.series("avg")

    @property
    def minima(self) -> DailyData:
        return self.series("low")

    @property
    def maxima(self) -> DailyData:
        return self.series("high")


def local_days(readings: Sequence[Reading], timezone: str) -> npt.NDArray[np.datetime64]:
    seconds = np.array([r.recorded_at.timestamp() for r in readings], dtype=np.float64)
    return _local_days(seconds, ZoneInfo(timezone))


def _local_days(seconds: npt.NDArray[np.float64], zone: ZoneInfo) -> npt.NDArray[np.datetime64]:
    # Zone offsets change only at whole quarter hours of UTC (tzdata has no finer transition), so
    # one lookup per distinct quarter hour is exact and costs far fewer calls than one per reading.
    quarters, where = np.unique(np.floor(seconds / QUARTER_HOUR), return_inverse=True)
    offsets = np.array([_offset(datetime.fromtimestamp(q * QUARTER_HOUR, zone)) for q in quarters])
    days: npt.NDArray[np.datetime64] = np.floor((seconds + offsets[where]) / SECONDS_PER_DAY).astype("datetime64[D]")
    return days


def _offset(moment: datetime) -> float:
    offset = moment.utcoffset()
    return offset.total_seconds() if offset is not None else 0.0


def daily(readings: Sequence[Reading], timezone: str) -> Daily:
    """Aggregate readings into local days; readings may come in any order."""
    names, metric = np.unique(np.array([r.metric for r in readings], dtype=object), return_inverse=True)
    seconds = np.array([r.recorded_at.timestamp() for r in readings], dtype=np.float64)
    values = np.array([r.value for r in readings], dtype=np.float64)
    days = _local_days(seconds, ZoneInfo(timezone)).astype(np.int64)

    # One group per (metric, day): sort by that key, then reduce each run.
    key = metric.astype(np.int64) * 1_000_000 + days
    order = np.lexsort((values, key))
    key, values = key[order], values[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    count = np.diff(np.r_[starts, key.size])
    avg = np.add.reduceat(values, starts) / count
    low = values[starts]  # sorted by value inside each group
    high = values[np.r_[starts[1:], key.size] - 1]
    group_metric = (key[starts] // 1_000_000).astype(np.intp)
    group_day = key[starts] % 1_000_000

    rolling = {window: np.empty_like(avg) for window in ROLLING}
    bounds = np.searchsorted(group_metric, np.arange(len(names) + 1))
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        for window, out in rolling.items():
            out[start:end] = _rolling_mean(group_day[start:end], avg[start:end], window)
    return Daily(
        tuple(str(n) for n in names),
        group_metric,
        group_day.astype("datetime64[D]"),
        avg,
        low,
        high,
        count.astype(np.int64),
        rolling[7],
        rolling[30],
    )


def _rolling_mean(days: npt.NDArray[np.int64], values: npt.NDArray[np.float64], window: int) -> npt.NDArray[np.float64]:
    """Mean of ``values`` over the days in (day − window, day], for each day (days sorted, unique)."""
    start = np.searchsorted(days, days - window + 1, side="left")
    cumulative = np.concatenate(([0.0], np.cumsum(values)))
    end = np.arange(1, len(values) + 1)
    result: npt.NDArray[np.float64] = (cumulative[end] - cumulative[start]) / (end - start)
    return result
