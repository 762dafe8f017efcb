"""The cardio domain: the mean of the resting-HR and blood-pressure parts (§4.2)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from zoneinfo import ZoneInfo

from db.metrics import Reading
from pipeline.analytics.scores.base import Score, ValuedScore, _blend, _input, _maybe, _on, _Part, _score, clip01
from pipeline.analytics.series import DailyData, DailySeries


def rhr_points(bpm: float) -> float:
    """RHR = 100·clip01((100 − RHR)/40): 100 at 60 bpm or below, 0 at 100 or above."""
    return 100 * clip01((100 - bpm) / 40)


# ACC/AHA 2017 categories, mildest first, and their points (§4.2).
BP_POINTS = {"normal": 100.0, "elevated": 80.0, "stage_1": 60.0, "stage_2": 30.0, "crisis": 0.0}
_BP_ORDER = tuple(BP_POINTS)


def bp_category_of(systolic: float, diastolic: float) -> str:
    """The ACC/AHA category (health-analytics §2).  Each number is classed on its own and the
    higher category wins; crisis is > 180 and/or > 120, so 180/120 is stage 2."""
    by_sys = 4 if systolic > 180 else 3 if systolic >= 140 else 2 if systolic >= 130 else 1 if systolic >= 120 else 0
    # Diastolic has no "elevated" band: under 80 is normal for it.
    by_dia = 4 if diastolic > 120 else 3 if diastolic >= 90 else 2 if diastolic >= 80 else 0
    return _BP_ORDER[max(by_sys, by_dia)]


def score_cardio(daily: DailyData, day: date, bp_category: str | None = None) -> Score:
    """Cardio = mean of the available parts (§4.2): RHR and the blood-pressure category.

    The category comes from the day's systolic and diastolic when both are present, else from
    ``bp_category`` (one of BP_POINTS).  None when neither part is available.
    Raises ValueError for an unknown ``bp_category``.
    """
    rhr = _on(daily, "resting_heart_rate", day)
    systolic, diastolic = _on(daily, "blood_pressure_systolic", day), _on(daily, "blood_pressure_diastolic", day)
    return _cardio(day, rhr, systolic, diastolic, bp_category)


def _cardio(
    day: date, rhr: float | None, systolic: float | None, diastolic: float | None, bp_category: str | None
) -> Score:
    """``score_cardio`` from the day's values (None when missing).  Raises as score_cardio does."""
    if bp_category is not None and bp_category not in BP_POINTS:
        raise ValueError(f"bp_category must be one of {', '.join(BP_POINTS)}")
    category, source = bp_category, None if bp_category is None else "given"
    if systolic is not None and diastolic is not None:
        category, source = bp_category_of(systolic, diastolic), "readings"
    bp = {"input": {"systolic": systolic, "diastolic": diastolic}, "unit": "mmHg", "category": category}
    value, contributors = _blend(
        {
            "rhr": _Part(0.5, _maybe(rhr_points, rhr), _input(rhr, "bpm")),
            "bp": _Part(0.5, None if category is None else BP_POINTS[category], bp | {"source": source}),
        }
    )
    reason = f"needs resting_heart_rate or both blood pressures on {day}, or a bp_category"
    return _score("cardio", day, value, contributors, reason)


_BP_METRICS = frozenset({"blood_pressure_systolic", "blood_pressure_diastolic"})
_CARDIO_METRICS = _BP_METRICS | {"resting_heart_rate"}


def cardio(readings: Iterable[Reading], timezone: str) -> ValuedScore | None:
    """The cardio score of the latest local day (in ``timezone``) that has a resting heart rate or
    both blood pressures, from the latest reading of each metric that day; None without such a day.

    This adapts raw readings for analyse_run until it builds daily series itself.
    """
    zone = ZoneInfo(timezone)
    latest: dict[date, dict[str, float]] = {}
    for reading in sorted((r for r in readings if r.metric in _CARDIO_METRICS), key=lambda r: r.recorded_at):
        latest.setdefault(reading.recorded_at.astimezone(zone).date(), {})[reading.metric] = reading.value
    days = [d for d, found in latest.items() if "resting_heart_rate" in found or found.keys() >= _BP_METRICS]
    if not days:
        return None
    day = max(days)
    daily = {metric: DailySeries.of({day.isoformat(): v}) for metric, v in latest[day].items()}
    score = score_cardio(daily, day)
    assert score.value is not None  # the day has at least one part
    return ValuedScore(score.domain, score.day, score.value, score.contributors)
