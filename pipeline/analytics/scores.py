"""Health scores per domain and local day: the transparent formulas of health-analytics §4.2.

Every domain reports its contributors: each part's input, sub-score and weight.  A domain without
its minimum input gets ``value=None`` and a ``reason`` naming what is missing.  It never gets a
default number: the seed's formula gave 70/"C" to a user with no data (vitasync-inventory §5.2).

When some optional parts are missing, the domain renormalises the weights of the parts it has.
The missing parts stay in the contributors with weight 0, and ``contributors["partial"]`` is true.
docs/scores.md gives each formula, a worked example and each domain's minimum input.
"""

from __future__ import annotations

__all__ = [
    "DOMAINS",
    "Composite",
    "Score",
    "SleepNight",
    "ValuedScore",
    "bp_category_of",
    "cardio",
    "compute_scores",
    "sleep_score",
]

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from db.metrics import Reading
from pipeline.analytics.series import DailyData, DailySeries, Days, Values

DOMAINS = ("sleep", "activity", "cardio", "recovery", "glycemic", "overall")


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


def clip01(value: float) -> float:
    return min(1.0, max(0.0, value))


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


def steps_points(steps: float, age: int | None = None) -> float:
    """Steps = 100·min(1, steps/T), T = 8,000 under 60 (or age unknown) and 7,000 at 60+ (Paluch 2022)."""
    return 100 * min(1.0, steps / steps_target(age))


def steps_target(age: int | None) -> int:
    return 7000 if age is not None and age >= 60 else 8000


def mvpa_points(weekly_minutes: float) -> float:
    """MVPA = 100·min(1, (moderate + 2·vigorous over the trailing 7 days)/150), WHO 2020."""
    return 100 * min(1.0, weekly_minutes / 150)


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


# --- Blending parts with renormalised weights ---


@dataclass(frozen=True, slots=True)
class _Part:
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
    present = [(p.weight, p.points) for p in parts.values() if p.points is not None]
    total = sum(weight for weight, _ in present)
    contributors: dict[str, Any] = {}
    for name, part in parts.items():
        used = part.weight / total if part.points is not None else 0.0
        contributors[name] = part.details | {
            "score": _r(part.points),
            "weight": round(used, 4),
            "nominal_weight": part.weight,
        }
    contributors["partial"] = len(present) < len(parts)
    value = sum(weight * points for weight, points in present) / total if present else None
    return value, contributors


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


# --- Domains from daily series ---


def _on(daily: DailyData, metric: str, day: date) -> float | None:
    series = daily.get(metric)
    return None if series is None else series.value_on(np.datetime64(day, "D"))


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


def _score(domain: str, day: date, value: float | None, contributors: dict[str, Any], reason: str) -> Score:
    # Without a value the reason says it all: a half-filled contributors dict would read like a score.
    if value is None:
        return Score(domain, day, None, {}, reason)
    return Score(domain, day, round(value, 1), contributors)


def score_sleep(daily: DailyData, day: date, age: int | None = None) -> Score:
    """The sleep domain; None without ``sleep_duration`` on ``day``."""
    night = _night(daily, day)
    if night is None:
        return Score("sleep", day, None, {}, f"needs sleep_duration on {day}")
    composite = sleep_score(night, age)
    return Score("sleep", day, round(composite.value, 1), composite.contributors)


def weekly_mvpa(day: date, moderate: DailySeries | None, vigorous: DailySeries | None) -> float | None:
    """Moderate + 2·vigorous minutes over the 7 days ending ``day``, or None unless each of those
    days has moderate or vigorous minutes.  On a day with only one of the two, the other counts as
    0.  A day with neither is a gap, not a 0: summing fewer days would understate the week, and
    scaling them up would invent minutes."""
    start, end = np.datetime64(day - timedelta(days=6), "D"), np.datetime64(day, "D")
    empty = np.full(7, np.nan)
    mod = empty if moderate is None else moderate.on_grid(start, end)
    vig = empty if vigorous is None else vigorous.on_grid(start, end)
    if not bool(np.all(~np.isnan(mod) | ~np.isnan(vig))):
        return None
    return float(np.nansum(mod) + 2 * np.nansum(vig))


def score_activity(
    daily: DailyData,
    day: date,
    age: int | None = None,
    moderate: DailySeries | None = None,
    vigorous: DailySeries | None = None,
) -> Score:
    """Activity = 0.5·Steps + 0.5·MVPA (§4.2).  One part alone counts with weight 1 (partial);
    None with neither ``steps`` on ``day`` nor a complete 7-day MVPA window."""
    steps, mvpa = _on(daily, "steps", day), weekly_mvpa(day, moderate, vigorous)
    value, contributors = _blend(
        {
            "steps": _Part(
                0.5,
                None if steps is None else steps_points(steps, age),
                _input(steps, "count") | {"target": steps_target(age)},
            ),
            "mvpa": _Part(0.5, _maybe(mvpa_points, mvpa), _input(mvpa, "min/week") | {"target": 150}),
        }
    )
    reason = f"needs steps on {day}, or moderate/vigorous minutes on each of the 7 days ending {day}"
    return _score("activity", day, value, contributors, reason)


def score_cardio(daily: DailyData, day: date, bp_category: str | None = None) -> Score:
    """Cardio = mean of the available parts (§4.2): RHR and the blood-pressure category.

    The category comes from the day's systolic and diastolic when both are present, else from
    ``bp_category`` (one of BP_POINTS).  None when neither part is available.
    Raises ValueError for an unknown ``bp_category``.
    """
    if bp_category is not None and bp_category not in BP_POINTS:
        raise ValueError(f"bp_category must be one of {', '.join(BP_POINTS)}")
    rhr = _on(daily, "resting_heart_rate", day)
    systolic, diastolic = _on(daily, "blood_pressure_systolic", day), _on(daily, "blood_pressure_diastolic", day)
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


BASELINE_DAYS, MIN_BASELINE_DAYS = 60, 28
RECOVERY_WEIGHTS = {"hrv": 0.5, "rhr": -0.3, "sleep": 0.2}
# A baseline with no spread (MAD 0) would give an infinite z.  §3.1 suggests flooring the scale
# at a meaningful minimum, 1 bpm for RHR; 0.05 ln-ms (about 5 % of RMSSD) and 1 sleep point are ours.
SCALE_FLOOR = {"hrv": 0.05, "rhr": 1.0, "sleep": 1.0}


def robust_z(value: float, baseline: Values, floor: float) -> tuple[float, float, float]:
    """(z, median, scale) with scale = 1.4826·MAD (a normal SD), floored at ``floor``."""
    median = float(np.median(baseline))
    scale = max(1.4826 * float(np.median(np.abs(baseline - median))), floor)
    return (value - median) / scale, median, scale


def phi(x: float) -> float:
    """The standard normal CDF."""
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def recovery_band(value: float) -> str:
    """Whoop's bands: ≥67 green, 34–66 yellow, ≤33 red (read as < 34 for decimal values)."""
    return "green" if value >= 67 else "yellow" if value >= 34 else "red"


def _baseline(daily: DailyData, metric: str, day: date) -> tuple[Days, Values]:
    """(days, values) of ``metric`` in the BASELINE_DAYS before ``day``, excluding ``day``."""
    series = daily.get(metric)
    if series is None:
        return np.array([], dtype="datetime64[D]"), np.array([], dtype=float)
    keep = (series.days >= np.datetime64(day - timedelta(days=BASELINE_DAYS), "D")) & (
        series.days < np.datetime64(day, "D")
    )
    return series.days[keep], series.values[keep]


def score_recovery(daily: DailyData, day: date, age: int | None = None) -> Score:
    """Recovery = 100·Φ(C/0.6164), C = 0.5·z_hrv − 0.3·z_rhr + 0.2·z_sleep (§4.2).

    Each z is robust (median and 1.4826·MAD) against the 60 days before ``day``; HRV is taken as
    ln RMSSD.  HRV and RHR on ``day`` and ≥ 28 baseline days of each are required, else None.
    z_sleep needs the night of ``day`` and ≥ 28 baseline nights; without them it is left out, and
    the divisor becomes √(0.5² + 0.3²) = 0.5831 (partial).
    """
    # A non-positive RMSSD has no logarithm: it is treated as missing.
    hrv = _on(daily, "hrv_rmssd", day)
    hrv = hrv if hrv is not None and hrv > 0 else None
    rhr = _on(daily, "resting_heart_rate", day)
    if hrv is None or rhr is None:
        missing = [m for m, v in (("hrv_rmssd", hrv), ("resting_heart_rate", rhr)) if v is None]
        return Score("recovery", day, None, {}, f"needs {' and '.join(missing)} on {day}")
    hrv_values = _baseline(daily, "hrv_rmssd", day)[1]
    hrv_values = np.log(hrv_values[hrv_values > 0])
    rhr_values = _baseline(daily, "resting_heart_rate", day)[1]
    counts = {"hrv_rmssd": len(hrv_values), "resting_heart_rate": len(rhr_values)}
    if min(counts.values()) < MIN_BASELINE_DAYS:
        have = ", ".join(f"{m} {n}" for m, n in counts.items())
        reason = f"needs {MIN_BASELINE_DAYS} baseline days of hrv_rmssd and resting_heart_rate in the"
        return Score("recovery", day, None, {}, f"{reason} {BASELINE_DAYS} days before {day} (has {have})")

    inputs: dict[str, tuple[float, Values, str]] = {
        "hrv": (math.log(hrv), hrv_values, "ln ms"),
        "rhr": (rhr, rhr_values, "bpm"),
    }
    night = _night(daily, day)
    nights = [_night(daily, d) for d in _baseline(daily, "sleep_duration", day)[0].tolist()]
    history = np.array([sleep_score(n, age).value for n in nights if n is not None])
    if night is not None and len(history) >= MIN_BASELINE_DAYS:
        inputs["sleep"] = (sleep_score(night, age).value, history, "points")

    contributors: dict[str, Any] = {}
    composite, squares = 0.0, 0.0
    for name, weight in RECOVERY_WEIGHTS.items():
        if name not in inputs:
            contributors[name] = {"input": None, "z": None, "weight": 0.0, "nominal_weight": weight}
            continue
        value, baseline, unit = inputs[name]
        z, median, scale = robust_z(value, baseline, SCALE_FLOOR[name])
        composite, squares = composite + weight * z, squares + weight**2
        contributors[name] = {
            "input": round(value, 4),
            "unit": unit,
            "baseline_median": round(median, 4),
            "baseline_scale": round(scale, 4),
            "baseline_days": len(baseline),
            "z": round(z, 3),
            "weight": weight,
            "nominal_weight": weight,
        }
    # √(0.5² + 0.3² + 0.2²) to 4 decimals is the reference's 0.6164; the same rule without sleep.
    divisor = round(math.sqrt(squares), 4)
    value = round(100 * phi(composite / divisor), 1)
    contributors |= {
        "composite": round(composite, 4),
        "divisor": divisor,
        "band": recovery_band(value),
        "partial": len(inputs) < len(RECOVERY_WEIGHTS),
    }
    return Score("recovery", day, value, contributors)


def score_glycemic(day: date, gri: float | None) -> Score:
    """Glycemic = 100 − GRI (§0, §1.3), the GRI capped at 100 as defined; None without a GRI.
    Raises ValueError for a GRI that is negative or not finite."""
    if gri is None:
        return Score("glycemic", day, None, {}, f"needs a glycemia risk index (GRI) from CGM data for {day}")
    if not (math.isfinite(gri) and gri >= 0):
        raise ValueError("gri must be a finite number ≥ 0")
    points = 100 - min(gri, 100.0)
    contributors = {"gri": _input(gri, "GRI") | {"score": _r(points), "weight": 1.0, "nominal_weight": 1.0}}
    return Score("glycemic", day, round(points, 1), contributors | {"partial": False})


def score_overall(day: date, domains: Mapping[str, Score]) -> Score:
    """Overall = equal-weight mean of the domains that have values (their rounded values), needing
    at least 3 of them (§4.2).  Every domain is listed, a missing one with its reason."""
    parts = {
        name: _Part(1 / len(domains), score.value, {} if score.reason is None else {"reason": score.reason})
        for name, score in domains.items()
    }
    value, contributors = _blend(parts)
    have = [name for name, score in domains.items() if score.value is not None]
    reason = f"needs 3 domains with values on {day} (has {len(have)}: {', '.join(have) or 'none'})"
    return _score("overall", day, value if len(have) >= 3 else None, contributors, reason)


def compute_scores(
    daily: DailyData,
    day: date,
    *,
    age: int | None = None,
    gri: float | None = None,
    moderate_minutes: DailySeries | None = None,
    vigorous_minutes: DailySeries | None = None,
    bp_category: str | None = None,
) -> dict[str, Score]:
    """Every domain of DOMAINS for local ``day``, in that order, each with a value or a reason.

    ``daily`` holds the canonical metrics per local day; history before ``day`` is used by the
    recovery baseline and the 7-day MVPA window.  ``gri`` comes from the CGM engine.
    Raises ValueError for an unknown ``bp_category`` or an invalid ``gri``.
    """
    found = {
        "sleep": score_sleep(daily, day, age),
        "activity": score_activity(daily, day, age, moderate_minutes, vigorous_minutes),
        "cardio": score_cardio(daily, day, bp_category),
        "recovery": score_recovery(daily, day, age),
        "glycemic": score_glycemic(day, gri),
    }
    return found | {"overall": score_overall(day, found)}


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
