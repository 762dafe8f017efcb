"""Daily series: the shape every analytics engine takes.

A series is one metric's value per local day: ``days`` is ``datetime64[D]`` ascending and
unique, ``values`` is float64 of the same length.  A day with no reading is simply absent
(engines that need a regular grid call ``on_grid``), and NaN never appears in ``values``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Days = npt.NDArray[np.datetime64]
Values = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class DailySeries:
    days: Days
    values: Values

    def __post_init__(self) -> None:
        if self.days.shape != self.values.shape or self.days.ndim != 1:
            raise ValueError("days and values must be 1-D arrays of the same length")

    @classmethod
    def of(cls, pairs: Mapping[str, float] | list[tuple[str, float]]) -> DailySeries:
        """From ("YYYY-MM-DD", value) pairs, in any order: handy in tests."""
        items = sorted(pairs.items() if isinstance(pairs, Mapping) else pairs)
        return cls(np.array([d for d, _ in items], dtype="datetime64[D]"), np.array([v for _, v in items], dtype=float))

    def __len__(self) -> int:
        return int(self.days.shape[0])

    def on_grid(self, start: np.datetime64, end: np.datetime64) -> Values:
        """Values on every day from ``start`` to ``end`` inclusive, NaN where a day is missing."""
        grid = np.full(int((end - start).astype(int)) + 1, np.nan)
        inside = (self.days >= start) & (self.days <= end)
        grid[(self.days[inside] - start).astype(int)] = self.values[inside]
        return grid

    def before(self, day: np.datetime64) -> DailySeries:
        keep = self.days < day
        return DailySeries(self.days[keep], self.values[keep])

    def day_numbers(self) -> npt.NDArray[np.int64]:
        """The days as day numbers (days since 1970-01-01, ``findings.day_number``), a view:
        rules that search or slice a series by day do it with Python ints, far cheaper than
        making and comparing datetime64 scalars."""
        numbers: npt.NDArray[np.int64] = self.days.astype("datetime64[D]", copy=False).view(np.int64)
        return numbers

    def value_on(self, day: np.datetime64) -> float | None:
        # The days are sorted and unique: a binary search instead of a scan, as the rules call
        # this ~100 times a user.
        i = int(self.days.searchsorted(day))
        return float(self.values[i]) if i < self.days.size and self.days[i] == day else None


DailyData = Mapping[str, DailySeries]


def median_of(values: Values) -> float:
    """``float(np.median(values))`` for a non-empty 1-D array without NaN: the same float at a
    tenth of the cost on the short windows the detectors judge (~1 µs against ~9 µs).

    The middle value, or the mean of the middle two, (a + b)/2.  np.median never returns -0.0:
    its mean sums onto +0.0.  Adding 0.0 does the same here, and changes no other number.
    """
    ordered = np.sort(values)
    half = ordered.size // 2
    middle = ordered[half] if ordered.size % 2 else (ordered[half - 1] + ordered[half]) / 2
    return float(middle) + 0.0
