"""Daily aggregates: per metric and local day, avg/min/max/count and rolling 7- and 30-day averages.

A local day is the user's calendar day (its IANA zone), so a reading at 23:30 in Honolulu
counts for that evening, not for the next UTC day.  Rolling averages are the mean of the
daily averages over the trailing 7 (30) calendar days ending on the day, over the days
that have data, so a missing day neither counts as zero nor shifts the window.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from zoneinfo import ZoneInfo

import numpy as np

from db.metrics import Reading
from pipeline.analytics.series import DailyData, DailySeries

ROLLING = (7, 30)


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
    """Everything the other engines need per day: the stats rows, and series of means, minima and maxima."""

    stats: tuple[DailyStat, ...]
    means: DailyData
    minima: DailyData
    maxima: DailyData


def local_days(readings: Sequence[Reading], timezone: str) -> np.ndarray:
    zone = ZoneInfo(timezone)
    return np.array([r.recorded_at.astimezone(zone).date() for r in readings], dtype="datetime64[D]")


def daily(readings: Iterable[Reading], timezone: str) -> Daily:
    """Aggregate readings into local days; readings may come in any order."""
    by_metric: dict[str, list[Reading]] = {}
    for reading in readings:
        by_metric.setdefault(reading.metric, []).append(reading)
    stats: list[DailyStat] = []
    means: dict[str, DailySeries] = {}
    minima: dict[str, DailySeries] = {}
    maxima: dict[str, DailySeries] = {}
    for metric in sorted(by_metric):
        rows = by_metric[metric]
        days = local_days(rows, timezone)
        values = np.array([r.value for r in rows], dtype=float)
        unique, index, count = np.unique(days, return_inverse=True, return_counts=True)
        total = np.bincount(index, weights=values)
        low = np.full(unique.shape, np.inf)
        high = np.full(unique.shape, -np.inf)
        np.minimum.at(low, index, values)
        np.maximum.at(high, index, values)
        avg = total / count
        rolling = {window: _rolling_mean(unique, avg, window) for window in ROLLING}
        means[metric] = DailySeries(unique, avg)
        minima[metric] = DailySeries(unique, low)
        maxima[metric] = DailySeries(unique, high)
        for i, day in enumerate(unique):
            stats.append(
                DailyStat(
                    metric,
                    day.astype(date),
                    round(float(avg[i]), 4),
                    float(low[i]),
                    float(high[i]),
                    int(count[i]),
                    round(float(rolling[7][i]), 4),
                    round(float(rolling[30][i]), 4),
                )
            )
    return Daily(tuple(stats), means, minima, maxima)


def _rolling_mean(days: np.ndarray, values: np.ndarray, window: int) -> np.ndarray:
    """Mean of ``values`` over the days in (day − window, day], for each day (days sorted, unique)."""
    ordinal = days.astype(int)
    start = np.searchsorted(ordinal, ordinal - window + 1, side="left")
    cumulative = np.concatenate(([0.0], np.cumsum(values)))
    end = np.arange(1, len(values) + 1)
    result: np.ndarray = (cumulative[end] - cumulative[start]) / (end - start)
    return result
