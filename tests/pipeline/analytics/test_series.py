"""``median_of`` is np.median, float for float, signed zeros included."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.analytics.series import median_of


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
