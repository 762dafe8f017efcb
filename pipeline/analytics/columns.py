"""Readings as columns: one array per field, so no engine needs an object per reading.

A user's 90 days hold ~2,700 readings.  ``ReadingColumns`` carries them as parallel arrays:
built from ``Reading`` objects (the CSV command, tests), or straight from the packed per-metric
bytes of ``db.analytics.readings`` with no object per reading at all.
"""

from __future__ import annotations

__all__ = ["ReadingColumns"]

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from db.metrics import Reading

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class ReadingColumns:
    """``names`` are the metrics, sorted and unique; per reading, ``metric`` indexes into them,
    ``seconds`` is the POSIX time (``datetime.timestamp()``) and ``values`` the value.

    Each metric's readings keep the order they were given in, which is time order from the
    database: the CGM engine keeps the first of two readings with the same timestamp.
    """

    names: tuple[str, ...]
    metric: npt.NDArray[np.intp]
    seconds: Floats
    values: Floats

    def __post_init__(self) -> None:
        if not self.metric.shape == self.seconds.shape == self.values.shape or self.metric.ndim != 1:
            raise ValueError("metric, seconds and values must be 1-D arrays of the same length")

    def __len__(self) -> int:
        return int(self.metric.shape[0])

    @classmethod
    def from_readings(cls, readings: Sequence[Reading]) -> ReadingColumns:
        metrics = [r.metric for r in readings]
        names = tuple(sorted(set(metrics)))
        index = {name: i for i, name in enumerate(names)}
        count = len(metrics)
        return cls(
            names,
            np.fromiter((index[m] for m in metrics), np.intp, count),
            np.fromiter((r.recorded_at.timestamp() for r in readings), np.float64, count),
            np.fromiter((r.value for r in readings), np.float64, count),
        )

    def of(self, name: str) -> tuple[Floats, Floats]:
        """(seconds, values) of one metric's readings, in the order given; empty when it has none."""
        if name not in self.names:
            return np.empty(0), np.empty(0)
        keep = self.metric == self.names.index(name)
        return self.seconds[keep], self.values[keep]
