"""The recovery domain: Recovery = 100·Φ(C/0.6164), C = 0.5·z_hrv − 0.3·z_rhr + 0.2·z_sleep (§4.2)."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import date
from typing import Any, NamedTuple

import numpy as np

from pipeline.analytics.findings import day_number
from pipeline.analytics.scores.base import Composite, Score
from pipeline.analytics.scores.sleep import _tonight, _window_scores
from pipeline.analytics.series import DailyData, Values, median_of

BASELINE_DAYS, MIN_BASELINE_DAYS = 60, 28
RECOVERY_WEIGHTS = {"hrv": 0.5, "rhr": -0.3, "sleep": 0.2}
# A baseline with no spread (MAD 0) would give an infinite z.  §3.1 suggests flooring the scale
# at a meaningful minimum, 1 bpm for RHR; 0.05 ln-ms (about 5 % of RMSSD) and 1 sleep point are ours.
SCALE_FLOOR = {"hrv": 0.05, "rhr": 1.0, "sleep": 1.0}


def robust_z(value: float, baseline: Values, floor: float) -> tuple[float, float, float]:
    """(z, median, scale) with scale = 1.4826·MAD (a normal SD), floored at ``floor``."""
    median = median_of(baseline)
    scale = max(1.4826 * median_of(np.abs(baseline - median)), floor)
    return (value - median) / scale, median, scale


def phi(x: float) -> float:
    """The standard normal CDF."""
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def recovery_band(value: float) -> str:
    """Whoop's bands: ≥67 green, 34–66 yellow, ≤33 red (read as < 34 for decimal values)."""
    return "green" if value >= 67 else "yellow" if value >= 34 else "red"


def _history(daily: DailyData, metric: str, day: date) -> tuple[float | None, Values]:
    """``metric``'s value on ``day`` (None without one) and its values in the BASELINE_DAYS before,
    excluding ``day``: one search of the series' sorted, unique days gives both."""
    series = daily.get(metric)
    if series is None:
        return None, np.array([], dtype=float)
    numbers, end = series.day_numbers(), day_number(day)
    first, stop = int(numbers.searchsorted(end - BASELINE_DAYS)), int(numbers.searchsorted(end))
    today = float(series.values[stop]) if stop < len(numbers) and numbers[stop] == end else None
    return today, series.values[first:stop]


def score_recovery(daily: DailyData, day: date, age: int | None = None) -> Score:
    """Recovery = 100·Φ(C/0.6164), C = 0.5·z_hrv − 0.3·z_rhr + 0.2·z_sleep (§4.2).

    Each z is robust (median and 1.4826·MAD) against the 60 days before ``day``; HRV is taken as
    ln RMSSD.  HRV and RHR on ``day`` and ≥ 28 baseline days of each are required, else None.
    z_sleep needs the night of ``day`` and ≥ 28 baseline nights; without them it is left out, and
    the divisor becomes √(0.5² + 0.3²) = 0.5831 (partial).
    """
    return _recovery(daily, day, age, lambda: _tonight(daily, day, age))


class Baseline(NamedTuple):
    """A robust baseline: how many days it has, its median and its scale (1.4826·MAD, floored)."""

    days: int
    median: float
    scale: float


def baseline_of(values: Values, floor: float) -> Baseline:
    """The Baseline of a non-empty window, as ``robust_z`` takes it."""
    _, median, scale = robust_z(0.0, values, floor)
    return Baseline(len(values), median, scale)


# A recovery part: the day's value, its baseline and its unit.
Inputs = dict[str, tuple[float, Baseline, str]]


def _recovery(daily: DailyData, day: date, age: int | None, tonight: Callable[[], Composite | None]) -> Score:
    """``score_recovery``, with the night's sleep score from ``tonight``: compute_scores has it
    already, and it is read only after the checks that need no sleep, as before."""
    # A non-positive RMSSD has no logarithm: it is treated as missing.
    hrv, hrv_values = _history(daily, "hrv_rmssd", day)
    hrv = hrv if hrv is not None and hrv > 0 else None
    rhr, rhr_values = _history(daily, "resting_heart_rate", day)
    hrv_values = np.log(hrv_values[hrv_values > 0])

    def inputs(hrv: float, rhr: float) -> Inputs:
        found: Inputs = {
            "hrv": (math.log(hrv), baseline_of(hrv_values, SCALE_FLOOR["hrv"]), "ln ms"),
            "rhr": (rhr, baseline_of(rhr_values, SCALE_FLOOR["rhr"]), "bpm"),
        }
        night = tonight()
        history = _window_scores(daily, day_number(day) - BASELINE_DAYS, day_number(day), age)
        if night is not None and len(history) >= MIN_BASELINE_DAYS:
            found["sleep"] = (night.value, baseline_of(history, SCALE_FLOOR["sleep"]), "points")
        return found

    return _recovery_of(day, hrv, rhr, (len(hrv_values), len(rhr_values)), inputs)


def _recovery_of(
    day: date,
    hrv: float | None,
    rhr: float | None,
    baseline_days: tuple[int, int],
    inputs: Callable[[float, float], Inputs],
) -> Score:
    """The recovery Score from the day's positive RMSSD and RHR (None when missing), the number of
    baseline days of each, and ``inputs``: the parts with their baselines, asked for only once the
    day and the baselines' lengths pass the checks (scoring a window of nights can raise)."""
    if hrv is None or rhr is None:
        missing = [m for m, v in (("hrv_rmssd", hrv), ("resting_heart_rate", rhr)) if v is None]
        return Score("recovery", day, None, {}, f"needs {' and '.join(missing)} on {day}")
    counts = dict(zip(("hrv_rmssd", "resting_heart_rate"), baseline_days, strict=True))
    if min(counts.values()) < MIN_BASELINE_DAYS:
        have = ", ".join(f"{m} {n}" for m, n in counts.items())
        reason = f"needs {MIN_BASELINE_DAYS} baseline days of hrv_rmssd and resting_heart_rate in the"
        return Score("recovery", day, None, {}, f"{reason} {BASELINE_DAYS} days before {day} (has {have})")

    parts = inputs(hrv, rhr)
    contributors: dict[str, Any] = {}
    composite, squares = 0.0, 0.0
    for name, weight in RECOVERY_WEIGHTS.items():
        if name not in parts:
            contributors[name] = {"input": None, "z": None, "weight": 0.0, "nominal_weight": weight}
            continue
        value, (days, median, scale), unit = parts[name]
        z = (value - median) / scale
        composite, squares = composite + weight * z, squares + weight**2
        contributors[name] = {
            "input": round(value, 4),
            "unit": unit,
            "baseline_median": round(median, 4),
            "baseline_scale": round(scale, 4),
            "baseline_days": days,
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
        "partial": len(parts) < len(RECOVERY_WEIGHTS),
    }
    return Score("recovery", day, value, contributors)
