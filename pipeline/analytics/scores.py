"""Health scores (reference: health-analytics §4.2).  A score without its inputs is None, never a guess."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from db.metrics import Reading


@dataclass(frozen=True, slots=True)
class Score:
    domain: str
    day: date
    value: float
    contributors: dict[str, Any]


def clip01(value: float) -> float:
    return min(1.0, max(0.0, value))


def cardio(readings: Iterable[Reading], timezone: str) -> Score | None:
    """Cardio = mean of the available parts; here the resting-HR part, 100·clip01((100 − RHR)/40),
    for the latest local day that has a resting heart rate."""
    latest = max((r for r in readings if r.metric == "resting_heart_rate"), key=lambda r: r.recorded_at, default=None)
    if latest is None:
        return None
    points = round(100 * clip01((100 - latest.value) / 40), 1)
    day = latest.recorded_at.astimezone(ZoneInfo(timezone)).date()
    contributors = {"resting_heart_rate": {"value": latest.value, "unit": latest.unit, "points": points}}
    return Score("cardio", day, points, contributors)
