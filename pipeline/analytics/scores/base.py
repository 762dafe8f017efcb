"""What every domain shares: the score types, and blending parts with renormalised weights."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, NamedTuple

from pipeline.analytics.findings import day_number
from pipeline.analytics.series import DailyData


@dataclass(frozen=True, slots=True)
class Score:
    """One domain's score for one local day, 0–100 rounded to 1 decimal.

    ``value`` None means "insufficient data", and then ``reason`` says what is missing.
    ``contributors`` is JSON-ready: per part its ``input``, ``score`` and ``weight``.
    """

    domain: str
    day: date
    value: float | None
    contributors: dict[str, Any]
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class ValuedScore(Score):
    """A Score that has a value: what callers that store scores get (health_scores.score is NOT NULL)."""

    value: float


@dataclass(frozen=True, slots=True)
class Composite:
    """A weighted blend before rounding: ``value`` 0–100 and the contributors that produced it."""

    value: float
    contributors: dict[str, Any]


def clip01(value: float) -> float:
    return min(1.0, max(0.0, value))


# --- Blending parts with renormalised weights ---


class _Part(NamedTuple):
    # A named tuple, not a frozen dataclass: a score makes ~17 of them, and a tuple is made in
    # about half the time.
    weight: float
    points: float | None
    details: dict[str, Any]


def _r(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def _maybe(points: Callable[[float], float], value: float | None) -> float | None:
    return None if value is None else points(value)


def _input(value: Any, unit: str) -> dict[str, Any]:
    return {"input": value, "unit": unit}


def _blend(parts: Mapping[str, _Part]) -> tuple[float | None, dict[str, Any]]:
    """The weighted mean of the parts that have points, with weights renormalised over them (None
    when none has), and the contributors: every part, a missing one with weight 0, and ``partial``."""
    # Summed left to right, as the nightly arrays in sleep.py are: from Python 3.12 on, sum()
    # compensates float rounding, and one ulp could split a baseline's median.
    total = weighted = 0.0
    present = 0
    for part in parts.values():
        if part.points is not None:
            total += part.weight
            weighted += part.weight * part.points
            present += 1
    contributors: dict[str, Any] = {}
    for name, part in parts.items():
        contributors[name] = {
            **part.details,
            "score": _r(part.points),
            "weight": 0.0 if part.points is None else round(part.weight / total, 4),
            "nominal_weight": part.weight,
        }
    contributors["partial"] = present < len(parts)
    return (weighted / total if present else None), contributors


def _on(daily: DailyData, metric: str, day: date) -> float | None:
    """``daily[metric].value_on(day)``, None without the metric: searched by day number, at a
    third of ``value_on``'s cost, whose datetime64 scalars are most of its ~5 µs."""
    series = daily.get(metric)
    if series is None or len(series) == 0:
        return None
    numbers, number = series.day_numbers(), day_number(day)
    if numbers[-1] == number:
        return float(series.values[-1])  # the latest day, as scores mostly read: no search
    i = int(numbers.searchsorted(number))
    return float(series.values[i]) if i < len(numbers) and numbers[i] == number else None


def _score(domain: str, day: date, value: float | None, contributors: dict[str, Any], reason: str) -> Score:
    # Without a value the reason says it all: a half-filled contributors dict would read like a score.
    if value is None:
        return Score(domain, day, None, {}, reason)
    return Score(domain, day, round(value, 1), contributors)
