"""Daily series: ``median_of`` is np.median, float for float, signed zeros included; day numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.analytics.findings import as_date, day_number
from pipeline.analytics.series import DailySeries, median_of


def sample(rng: np.random.Generator, kind: str, size: int) -> np.ndarray:
    if kind == "normal":
        return rng.normal(60, 8, size)
    if kind == "ties":
        return rng.integers(55, 65, size).astype(float)
    if kind == "zeros":
        return rng.choice([-0.0, 0.0, -1.0, 1.0], size)
    # A skin-temperature deviation rounded to 0.01 °C: -0.0 and 0.0 both occur.
    return np.round(rng.normal(0, 0.01, size), 2)


@pytest.mark.parametrize("kind", ["normal", "ties", "zeros", "rounded near zero"])
def test_median_of_is_np_median_to_the_bit(kind: str) -> None:
    rng = np.random.default_rng(len(kind))
    for _ in range(5_000):
        values = sample(rng, kind, int(rng.integers(1, 70)))
        expected, found = float(np.median(values)), median_of(values)
        assert found == expected and math.copysign(1, found) == math.copysign(1, expected)


def test_day_numbers_count_days_from_1970_as_day_number_does() -> None:
    series = DailySeries.of({"2026-03-01": 1.5, "2026-03-03": -2.0, "1969-12-30": 4.0})

    assert series.day_numbers().tolist() == [-2, 20513, 20515]
    assert series.day_numbers().tolist() == [day_number(as_date(day)) for day in series.days]
