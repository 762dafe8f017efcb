"""The canonical vocabulary: every stored reading uses one of these metric names and its unit,
and every stored session one of these kinds, with these detail keys."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from db.metrics import Reading
from db.sessions import Session

UNITS: dict[str, str] = {
    "steps": "count",
    "active_energy": "kcal",
    "resting_heart_rate": "bpm",
    "heart_rate": "bpm",
    "hrv_rmssd": "ms",
    # Apple's HRV: the SDNN of a short recording.  Not comparable with RMSSD, so kept apart.
    "hrv_sdnn": "ms",
    "sleep_duration": "min",
    "sleep_efficiency": "%",
    "sleep_deep": "min",
    "sleep_rem": "min",
    "spo2": "%",
    "respiratory_rate": "/min",
    "skin_temp_deviation": "°C",
    "body_temperature": "°C",
    "weight": "kg",
    "blood_pressure_systolic": "mmHg",
    "blood_pressure_diastolic": "mmHg",
    "glucose": "mg/dL",
    "vo2max": "mL/kg/min",
    "recovery_score": "score",
    "strain": "score",
}


# What a body and a sensor can produce, per metric, in its canonical unit: wide on purpose.  A
# value outside is a device or mapping fault (negative steps, SpO2 of 150 %), never a finding;
# anything a clinician should see, however extreme, lies inside.
PLAUSIBLE: dict[str, tuple[float, float]] = {
    "steps": (0, 200_000),
    "active_energy": (0, 20_000),
    "resting_heart_rate": (20, 250),
    "heart_rate": (20, 300),
    "hrv_rmssd": (0, 500),
    "hrv_sdnn": (0, 500),
    "sleep_duration": (0, 1440),
    "sleep_efficiency": (0, 100),
    "sleep_deep": (0, 1440),
    "sleep_rem": (0, 1440),
    "spo2": (30, 100),
    "respiratory_rate": (2, 80),
    "skin_temp_deviation": (-10, 10),
    "body_temperature": (25, 45),
    "weight": (0.5, 500),
    "blood_pressure_systolic": (40, 300),
    "blood_pressure_diastolic": (20, 200),
    "glucose": (10, 1000),
    "vo2max": (5, 100),
    "recovery_score": (0, 100),
    "strain": (0, 21),
}


def problem(reading: Reading, window_start: datetime, window_end: datetime) -> str | None:
    """Why ``reading`` cannot be stored, or None when it can.  The reason names no value."""
    unit = UNITS.get(reading.metric)
    if unit is None:
        return f"unknown metric {reading.metric!r}"
    if reading.unit != unit:
        return f"{reading.metric} in {reading.unit!r}, expected {unit!r}"
    if not isinstance(reading.value, int | float) or not math.isfinite(reading.value):
        return f"{reading.metric} value is not a finite number"
    low, high = PLAUSIBLE[reading.metric]
    if not low <= reading.value <= high:
        return f"{reading.metric} outside the plausible range {low:g}-{high:g} {unit}"
    if reading.recorded_at.tzinfo is None:
        return f"{reading.metric} timestamp has no time zone"
    if not window_start <= reading.recorded_at <= window_end:
        return f"{reading.metric} recorded outside the sync window"
    return None


# Per kind: the longest believable session, and the summary keys its details may carry.
MAX_DURATION: dict[str, timedelta] = {"sleep": timedelta(hours=24), "workout": timedelta(hours=24)}
DETAILS: dict[str, frozenset[str]] = {
    "sleep": frozenset({"deep_min", "rem_min", "light_min", "awake_min"}),
    "workout": frozenset({"energy_kcal", "distance_m", "avg_heart_rate_bpm", "max_heart_rate_bpm"}),
}
# A device clock a few minutes fast is common; a session later than this is not a clock.
CLOCK_SKEW = timedelta(minutes=10)
# Providers file sessions by day, so a night reported inside the window may end before it.
FILED_BY_DAY = timedelta(days=1)


def session_problem(session: Session, window_start: datetime, window_end: datetime) -> str | None:
    """Why ``session`` cannot be stored, or None when it can.  The reason names no value."""
    longest = MAX_DURATION.get(session.kind)
    if longest is None:
        return f"unknown session kind {session.kind!r}"
    if session.started_at.tzinfo is None or session.ended_at.tzinfo is None:
        return f"{session.kind} session timestamp has no time zone"
    if session.ended_at <= session.started_at:
        return f"{session.kind} session does not end after it starts"
    # Under a second would store duration_s = 0, the very defect sessions exist to avoid.
    if session.duration < timedelta(seconds=1):
        return f"{session.kind} session lasts under a second"
    if session.duration > longest:
        return f"{session.kind} session longer than {longest.total_seconds() / 3600:g} h"
    if session.started_at > window_end + CLOCK_SKEW:
        return f"{session.kind} session starts in the future"
    if session.ended_at > window_end + CLOCK_SKEW:
        return f"{session.kind} session has not ended yet"
    if session.ended_at < window_start - FILED_BY_DAY:
        return f"{session.kind} session ended before the sync window"
    unknown = set(session.details) - DETAILS[session.kind]
    if unknown:
        return f"unknown {session.kind} detail {sorted(unknown)[0]!r}"
    if not all(isinstance(v, int | float) and math.isfinite(v) for v in session.details.values()):
        return f"{session.kind} session detail is not a finite number"
    return None
