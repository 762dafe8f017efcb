"""The sleep domain: Sleep = 0.40·Dur + 0.20·Eff + 0.10·Lat + 0.15·WASO + 0.15·Stage (§4.2).

``sleep_score`` scores one night; ``sleep_scores`` scores many nights on arrays, with the same
operations in the same order (the duration's branches taken as an exact minimum), so it gives the
same floats (a test holds it to ``sleep_score``).
The recovery baseline needs about 60 nightly scores per user, and one object per night cost
more than every other engine together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

import numpy as np

from pipeline.analytics.scores.base import (
    Composite,
    Score,
    _blend,
    _input,
    _maybe,
    _on,
    _Part,
    _r,
    clip01,
)
from pipeline.analytics.series import DailyData, DailySeries, Days, Values


@dataclass(frozen=True, slots=True)
class SleepNight:
    """One night, in minutes and percent.  Only the duration (total sleep time) is required."""

    duration_min: float
    efficiency: float | None = None
    latency_min: float | None = None
    waso_min: float | None = None
    rem_min: float | None = None
    deep_min: float | None = None

    def __post_init__(self) -> None:
        for name in ("duration_min", "efficiency", "latency_min", "waso_min", "rem_min", "deep_min"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number ≥ 0")


# --- Sub-scores, each 0–100 and linear between its anchors (health-analytics §4.2) ---


def duration_points(minutes: float, age: int | None = None) -> float:
    """Dur: 100 within [7, 9] h ([7, 8] h at 65 or over, NSF); 100·(h − 4)/3 below, floored at 0;
    100 − 10·(h − upper) above, floored at 60.  An unknown age uses the 18–64 band."""
    hours, upper = minutes / 60, 8.0 if age is not None and age >= 65 else 9.0
    if hours < 7:
        return max(0.0, 100 * (hours - 4) / 3)
    return 100.0 if hours <= upper else max(60.0, 100 - 10 * (hours - upper))


def efficiency_points(percent: float) -> float:
    """Eff = 100·clip01((eff% − 65)/25): 0 at 65 %, 100 from 90 %."""
    return 100 * clip01((percent - 65) / 25)


def latency_points(minutes: float) -> float:
    """Lat = 100 up to 20 min, else 100·clip01((60 − lat)/40): 0 from 60 min."""
    return 100.0 if minutes <= 20 else 100 * clip01((60 - minutes) / 40)


def waso_points(minutes: float) -> float:
    """WASO = 100 up to 20 min, else 100·clip01((90 − W)/70): 0 from 90 min."""
    return 100.0 if minutes <= 20 else 100 * clip01((90 - minutes) / 70)


def band_points(percent: float, low: float, high: float) -> float:
    """100 inside [low, high], minus 5 points per percentage point outside, floored at 0."""
    return max(0.0, 100 - 5 * max(low - percent, percent - high, 0.0))


def sleep_score(night: SleepNight, age: int | None = None) -> Composite:
    """Sleep = 0.40·Dur + 0.20·Eff + 0.10·Lat + 0.15·WASO + 0.15·Stage (§4.2), unrounded.

    Missing efficiency, latency, WASO or stages are renormalised away.  Stage is the mean of the
    REM band (18–27 % of total sleep) and the deep band (13–23 %), over whichever of the two is known.
    """
    total = night.duration_min

    def band(minutes: float | None, low: float, high: float) -> _Part:
        percent = 100 * minutes / total if minutes is not None and total > 0 else None
        points = None if percent is None else band_points(percent, low, high)
        return _Part(0.5, points, _input(minutes, "min") | {"percent": _r(percent), "band": [low, high]})

    stages, stage_parts = _blend({"rem": band(night.rem_min, 18, 27), "deep": band(night.deep_min, 13, 23)})
    value, contributors = _blend(
        {
            "duration": _Part(0.40, duration_points(total, age), _input(total, "min")),
            "efficiency": _Part(0.20, _maybe(efficiency_points, night.efficiency), _input(night.efficiency, "%")),
            "latency": _Part(0.10, _maybe(latency_points, night.latency_min), _input(night.latency_min, "min")),
            "waso": _Part(0.15, _maybe(waso_points, night.waso_min), _input(night.waso_min, "min")),
            "stages": _Part(0.15, stages, stage_parts),
        }
    )
    assert value is not None  # the duration part always has points
    return Composite(value, contributors | {"age": age})


# SleepNight's fields and the daily metrics they are read from, in blending order.
_NIGHT_FIELDS = ("duration_min", "efficiency", "latency_min", "waso_min", "rem_min", "deep_min")
_NIGHT_METRICS = ("sleep_duration", "sleep_efficiency", "sleep_latency", "sleep_waso", "sleep_rem", "sleep_deep")


def sleep_scores(
    duration: Values,
    efficiency: Values,
    latency: Values,
    waso: Values,
    rem: Values,
    deep: Values,
    age: int | None = None,
) -> Values:
    """``sleep_score(SleepNight(...), age).value`` for each night, on arrays of the same length.

    NaN marks a missing optional part; every duration must be present.  Each sub-score is the
    scalar formula written with numpy's elementwise operations, and the blend adds the present
    parts left to right as ``_blend`` does, so the floats are the same ones.
    Raises ValueError when a value is negative or infinite, or a duration is missing.
    """
    for name, values in zip(_NIGHT_FIELDS, (duration, efficiency, latency, waso, rem, deep), strict=True):
        bad = (values < 0) | np.isinf(values) | (np.isnan(values) if name == "duration_min" else False)
        if bad.any():
            raise ValueError(f"{name} must be a finite number ≥ 0")
    return _sleep_scores(duration, efficiency, latency, waso, rem, deep, age)


def _sleep_scores(
    duration: Values,
    efficiency: Values | None,
    latency: Values | None,
    waso: Values | None,
    rem: Values | None,
    deep: Values | None,
    age: int | None,
) -> Values:
    """``sleep_scores`` of checked nights, None standing for a part missing on every night.

    A numpy call costs about as much on 60 nights as on one, so the work is done in few calls:
    parts nobody measured (latency and WASO, for every provider so far) are skipped rather than
    carried as NaN, and the two stage bands and each blend are computed as rows of one array.
    """
    # Constants are floats: numpy converts an int operand on every call, at about a third of the
    # call's cost.  The values are the same, so are the floats.
    hours, upper = duration / 60.0, 8.0 if age is not None and age >= 65 else 9.0
    # duration_points without its branches: under 7 h the rising line is ≤ 100 and the falling
    # one > 100; up to the upper bound both are ≥ 100; above it the rising one is > 100 and the
    # falling one ≤ 100.  So the least of 100 and the two lines is the branch's own float.
    rising = np.maximum(0.0, 100.0 * (hours - 4.0) / 3.0)
    falling = np.maximum(60.0, 100.0 - 10.0 * (hours - upper))
    parts, weights = [np.minimum(100.0, np.minimum(rising, falling))], [0.40]
    # clip01 is min(1, max(0, v)); NaN (missing) goes through every step and stays NaN.
    if efficiency is not None:
        parts.append(100.0 * np.minimum(1.0, np.maximum(0.0, (efficiency - 65.0) / 25.0)))
        weights.append(0.20)
    if latency is not None:
        parts.append(
            np.where(latency <= 20.0, 100.0, 100.0 * np.minimum(1.0, np.maximum(0.0, (60.0 - latency) / 40.0)))
        )
        weights.append(0.10)
    if waso is not None:
        parts.append(np.where(waso <= 20.0, 100.0, 100.0 * np.minimum(1.0, np.maximum(0.0, (90.0 - waso) / 70.0))))
        weights.append(0.15)
    if rem is not None or deep is not None:
        missing = np.full(duration.shape, np.nan)
        minutes = np.array([missing if rem is None else rem, missing if deep is None else deep])
        # band_points of each stage's percentage: NaN where the stage or a positive total is missing.
        percent = np.divide(100.0 * minutes, duration, out=np.full(minutes.shape, np.nan), where=duration > 0.0)
        bands = np.maximum(0.0, 100.0 - 5.0 * np.maximum(np.maximum(_STAGE_LOW - percent, percent - _STAGE_HIGH), 0.0))
        parts.append(_blend_nights(bands, [0.5, 0.5]))
        weights.append(0.15)
    return _blend_nights(np.array(parts), weights)


# The REM and deep bands (% of total sleep) as columns, against a row of nights each.
_STAGE_LOW, _STAGE_HIGH = np.array([[18.0], [13.0]]), np.array([[27.0], [23.0]])


def _blend_nights(points: Values, weights: list[float]) -> Values:
    """``_blend``'s value per night, with a row of ``points`` and a weight per part: the present
    parts (not NaN) summed left to right, over their weights summed the same way; NaN where no
    part is present."""
    have = np.isfinite(points)  # points are finite or NaN (missing)
    weighted: Values | float = 0.0
    if have.all():
        # Every part on every night, as usual: the same sums, without masks.
        total = 0.0
        for weight, row in zip(weights, points, strict=True):
            weighted, total = weighted + weight * row, total + weight
        every: Values = np.divide(weighted, total)
        return every
    totals: Values | float = 0.0
    for weight, row, present in zip(weights, points, have, strict=True):
        # A missing part adds 0.0, which changes no sum.
        weighted, totals = weighted + np.where(present, weight * row, 0.0), totals + np.where(present, weight, 0.0)
    value: Values = np.divide(weighted, totals, out=np.full(points.shape[1:], np.nan), where=np.greater(totals, 0))
    return value


def nightly_scores(daily: DailyData, days: Days, age: int | None = None) -> Values:
    """The unrounded sleep score of each night in ``days`` that has a ``sleep_duration``, in order:
    ``[sleep_score(_night(daily, d), age).value for d in days]`` without the None nights."""
    duration = _values_on(daily.get("sleep_duration"), days)
    if duration is None:
        return np.array([], dtype=float)
    has_night = ~np.isnan(duration)
    return _nightly_scores(daily, days[has_night], duration[has_night], age)


def _nightly_scores(daily: DailyData, nights: Days, duration: Values, age: int | None) -> Values:
    """``nightly_scores`` of ``nights``, each of which has ``duration``."""
    others = [_values_on(daily.get(metric), nights) for metric in _NIGHT_METRICS[1:]]
    every = np.concatenate([duration, *(column for column in others if column is not None)])
    if ((every < 0) | np.isinf(every)).any():
        return _scalar_scores(daily, nights, age)
    efficiency, latency, waso, rem, deep = others
    return _sleep_scores(duration, efficiency, latency, waso, rem, deep, age)


def _window_scores(daily: DailyData, first: int, stop: int, age: int | None) -> Values:
    """``nightly_scores`` of the days numbered ``first`` up to ``stop`` (excluded): the nights are
    the slice of the duration's sorted, unique days between two searches."""
    series = daily.get("sleep_duration")
    if series is None:
        return np.array([], dtype=float)
    numbers = series.day_numbers()
    start, end = int(numbers.searchsorted(first)), int(numbers.searchsorted(stop))
    return _nightly_scores(daily, series.days[start:end], series.values[start:end], age)


def _scalar_scores(daily: DailyData, nights: Days, age: int | None) -> Values:
    """One ``sleep_score`` a night: for nights with a bad value, where SleepNight raises and names
    the field as it always has."""
    found = [_night(daily, d) for d in nights.tolist()]
    return np.array([sleep_score(n, age).value for n in found if n is not None])


def _values_on(series: DailySeries | None, days: Days) -> Values | None:
    """The series' value on each of ``days``, NaN where it has none (series hold no NaN); None
    when the series has no values at all."""
    if series is None or len(series) == 0:
        return None
    # Mostly the series has a value on each of ``days`` and none between: they are then a slice.
    start = int(series.days.searchsorted(days[0])) if len(days) else 0
    same = series.days[start : start + len(days)]
    if same.shape == days.shape and bool((same == days).all()):
        return series.values[start : start + len(days)]
    # The first day on or after each of ``days``; take(mode="clip") reads the last one past the end.
    at = np.searchsorted(series.days, days)
    found: Values = np.where(series.days.take(at, mode="clip") == days, series.values.take(at, mode="clip"), np.nan)
    return found


def _night(daily: DailyData, day: date) -> SleepNight | None:
    """The night dated ``day`` (the night that ended that morning), or None without a duration.
    Latency and WASO are read as ``sleep_latency``/``sleep_waso`` (min) once a provider adds them."""
    duration = _on(daily, "sleep_duration", day)
    if duration is None:
        return None
    return SleepNight(
        duration,
        _on(daily, "sleep_efficiency", day),
        _on(daily, "sleep_latency", day),
        _on(daily, "sleep_waso", day),
        _on(daily, "sleep_rem", day),
        _on(daily, "sleep_deep", day),
    )


def score_sleep(daily: DailyData, day: date, age: int | None = None) -> Score:
    """The sleep domain; None without ``sleep_duration`` on ``day``."""
    return _sleep_of(day, _tonight(daily, day, age))


def _tonight(daily: DailyData, day: date, age: int | None) -> Composite | None:
    """``sleep_score`` of the night of ``day``, None without one: the sleep domain and the recovery
    domain's z_sleep share it."""
    night = _night(daily, day)
    return None if night is None else sleep_score(night, age)


def _sleep_of(day: date, tonight: Composite | None) -> Score:
    if tonight is None:
        return Score("sleep", day, None, {}, f"needs sleep_duration on {day}")
    return Score("sleep", day, round(tonight.value, 1), tonight.contributors)
