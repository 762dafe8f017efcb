"""The plausibility ranges: device faults are refused, extreme but real values are kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from db.metrics import Reading
from pipeline.vocabulary import PLAUSIBLE, UNITS, problem

AT = datetime(2026, 11, 20, 7, tzinfo=UTC)


def check(metric: str, value: float) -> str | None:
    return problem(Reading(metric, AT, value, UNITS[metric]), AT - timedelta(days=1), AT + timedelta(days=1))


def test_every_metric_has_a_range() -> None:
    assert set(PLAUSIBLE) == set(UNITS)
    assert all(low < high for low, high in PLAUSIBLE.values())


@pytest.mark.parametrize(
    ("metric", "value"),
    [("steps", -12), ("spo2", 150), ("heart_rate", 7), ("body_temperature", 3.7), ("glucose", 5000)],
)
def test_a_device_fault_is_refused_without_echoing_the_value(metric: str, value: float) -> None:
    reason = check(metric, value)
    assert reason is not None and "plausible range" in reason and str(value) not in reason


@pytest.mark.parametrize(
    ("metric", "value"),
    [("glucose", 40), ("spo2", 72), ("heart_rate", 220), ("body_temperature", 41.5), ("steps", 0)],
)
def test_an_extreme_but_real_value_is_kept_for_the_clinical_rules(metric: str, value: float) -> None:
    assert check(metric, value) is None
