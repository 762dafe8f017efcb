"""The canonical metric vocabulary: every stored reading uses one of these names and its unit."""

from __future__ import annotations

import math
from datetime import datetime

from db.metrics import Reading

UNITS: dict[str, str] = {
    "steps": "count",
    "active_energy": "kcal",
    "resting_heart_rate": "bpm",
    "heart_rate": "bpm",
    "hrv_rmssd": "ms",
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


def problem(reading: Reading, window_start: datetime, window_end: datetime) -> str | None:
    """Why ``reading`` cannot be stored, or None when it can.  The reason names no value."""
    unit = UNITS.get(reading.metric)
    if unit is None:
        return f"unknown metric {reading.metric!r}"
    if reading.unit != unit:
        return f"{reading.metric} in {reading.unit!r}, expected {unit!r}"
    if not isinstance(reading.value, int | float) or not math.isfinite(reading.value):
        return f"{reading.metric} value is not a finite number"
    if reading.recorded_at.tzinfo is None:
        return f"{reading.metric} timestamp has no time zone"
    if not window_start <= reading.recorded_at <= window_end:
        return f"{reading.metric} recorded outside the sync window"
    return None
