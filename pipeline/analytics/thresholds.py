"""Per-patient clinical thresholds (reference: health-analytics §2).

Care teams tune these per patient: a COPD patient with a hypercapnic target of 88–92 % gets
``Thresholds.from_dict({"spo2_low": 88, "spo2_critical": 85})``, an HF patient whose team uses
2 lb/day gets ``{"weight_gain_day_kg": 0.907}``.  Every comparison is stated next to its field,
because the sources disagree on ``>`` versus ``≥`` and the tests pin each boundary.
"""

from __future__ import annotations

__all__ = ["DEFAULT", "LB", "Thresholds"]

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

LB = 0.45359237  # kg per pound (exact, by definition)


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Clinical alert thresholds.  Construct directly or with ``from_dict``; both validate."""

    # Resting HR.  AHA adult normal range 60–100 bpm: above 100 at rest is tachycardia. Fires > rhr_high.
    rhr_high: float = 100.0
    # 2018 ACC/AHA/HRS (Kusumoto, JACC 2019;74:e51): sinus bradycardia < 50 bpm (the textbook < 60 would
    # flag many trained adults).  Fires < rhr_low.
    rhr_low: float = 50.0
    # SpO₂ warning.  NEWS2 scale 1 (RCP 2017) gives 3 points at ≤ 91 %; BTS 2017 targets 94–98 % for
    # most adults, so below 92 is well under target.  Fires < spo2_low.  Patients at risk of hypercapnic
    # failure (some COPD) have a target of 88–92 % (BTS 2017): set 88.  A value below 92 also means
    # NEWS2 scale 1 does not apply, so the NEWS2 aggregate then leaves SpO₂ out (scale 2 is not built).
    spo2_low: float = 92.0
    # SpO₂ critical: below 88 % is below every BTS target range, the hypercapnic 88–92 % included, and is
    # the level of "occult hypoxaemia" in the NIH COVID-19 guideline.  Fires < spo2_critical.
    spo2_critical: float = 88.0
    # Fever: CDC, ≥ 38.0 °C (100.4 °F) for oral/core temperature; ``body_temperature`` only, never the
    # wearable's skin-temperature deviation.  Fires ≥ fever_c.
    fever_c: float = 38.0
    # Respiratory rate.  NEWS2 gives 3 points at ≥ 25 and ≤ 8 breaths/min: warn there (12–20 is normal,
    # 21–24 scores 2 and is left to the aggregate).  NIH severe COVID-19: > 30 → critical.
    rr_high: float = 24.0  # fires > rr_high
    rr_critical: float = 30.0  # fires > rr_critical
    rr_low: float = 9.0  # fires < rr_low
    # Heart-failure weight gain: patient-education consensus (AHA/HFSA-style materials) says call at
    # > 2–3 lb in a day or > 5 lb in a week.  3 lb = 1.361 kg, rounded to 1.36; 5 lb = 2.268 kg.
    # Fires > the limit (gains are compared after rounding to 1e-6 kg).
    weight_gain_day_kg: float = round(3 * LB, 2)  # 1.36
    weight_gain_week_kg: float = round(5 * LB, 3)  # 2.268
    # Blood pressure, 2017 ACC/AHA (Whelton, Hypertension 2018;71:1269), kept by the 2025 guideline.
    # Stage 1: ≥ 130 or ≥ 80 (info).  Stage 2: ≥ 140 or ≥ 90 (warning).  Crisis: > 180 and/or > 120
    # (critical; the AHA chart's strict form).  The higher category of systolic and diastolic wins.
    bp_stage1_systolic: float = 130.0
    bp_stage1_diastolic: float = 80.0
    bp_stage2_systolic: float = 140.0
    bp_stage2_diastolic: float = 90.0
    bp_crisis_systolic: float = 180.0
    bp_crisis_diastolic: float = 120.0
    # Glucose (mg/dL), single meter readings.  ADA Standards §6: level 1 hypo < 70, level 2 < 54,
    # level 2 hyper > 250.  Fires < glucose_hypo_l1 / < glucose_hypo_l2 / > glucose_hyper_l2.
    glucose_hypo_l1: float = 70.0
    glucose_hypo_l2: float = 54.0
    glucose_hyper_l2: float = 250.0
    # NEWS2 aggregate response (RCP 2017): total ≥ 5 urgent → warning, ≥ 7 emergency → critical.
    news2_urgent: int = 5
    news2_emergency: int = 7

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"threshold {f.name} must be a number, got {type(value).__name__}")
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"threshold {f.name} must be a positive finite number, got {value!r}")
            if f.type == "int" and not float(value).is_integer():
                raise ValueError(f"threshold {f.name} must be a whole number, got {value!r}")
        for low, high in _ORDER:
            if getattr(self, low) > getattr(self, high):
                raise ValueError(
                    f"threshold {low} ({getattr(self, low):g}) must not exceed {high} ({getattr(self, high):g})"
                )

    @classmethod
    def from_dict(cls, raw: Mapping[str, object]) -> Thresholds:
        """The defaults with ``raw``'s overrides.

        Raises ValueError naming the key for an unknown key, a value that is not a finite positive
        number (booleans and strings included), or limits out of order (e.g. spo2_critical above
        spo2_low).  Never TypeError: the message is fit for a 4xx.
        """
        known = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise ValueError(f"unknown threshold key {unknown[0]!r}; known keys: {', '.join(sorted(known))}")
        # Any: each value is checked here and again, per field, by __post_init__.
        values: dict[str, Any] = {}
        for key, value in raw.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"threshold {key} must be a number, got {type(value).__name__}")
            # Field types are strings here (postponed annotations).  A whole 5.0 for an int field
            # is stored as 5; 5.5 is left for __post_init__ to refuse.
            whole = float(value).is_integer()
            values[key] = (int(value) if whole else value) if known[key] == "int" else float(value)
        return replace(cls(), **values)


# (lower, higher) pairs that must stay in order, or a rule could never fire or fire backwards.
_ORDER: tuple[tuple[str, str], ...] = (
    ("rhr_low", "rhr_high"),
    ("spo2_critical", "spo2_low"),
    ("rr_low", "rr_high"),
    ("rr_high", "rr_critical"),
    ("bp_stage1_systolic", "bp_stage2_systolic"),
    ("bp_stage2_systolic", "bp_crisis_systolic"),
    ("bp_stage1_diastolic", "bp_stage2_diastolic"),
    ("bp_stage2_diastolic", "bp_crisis_diastolic"),
    ("glucose_hypo_l2", "glucose_hypo_l1"),
    ("glucose_hypo_l1", "glucose_hyper_l2"),
    ("weight_gain_day_kg", "weight_gain_week_kg"),
    ("news2_urgent", "news2_emergency"),
)

DEFAULT = Thresholds()
