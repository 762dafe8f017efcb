"""Reading one Apple Health export.xml: HealthKit records into canonical readings and sessions.

=========================================  ==========================================
HealthKit type                             Reading
=========================================  ==========================================
HeartRate, RestingHeartRate (count/min)    heart_rate, resting_heart_rate, at startDate
HeartRateVariabilitySDNN (ms)              hrv_sdnn: SDNN is not RMSSD (hrv_rmssd)
BodyMass (kg, lb, g)                       weight (kg)
BloodPressureSystolic/Diastolic (mmHg)     blood_pressure_systolic/diastolic
OxygenSaturation (%, stored as a fraction) spo2 (× 100)
RespiratoryRate (count/min)                respiratory_rate
BodyTemperature (degC, degF)               body_temperature (°C)
BloodGlucose (mg/dL, mmol<M>/L)            glucose (mg/dL: mmol/L × M / 10)
VO2Max (mL/min·kg)                         vo2max
StepCount, ActiveEnergyBurned (kcal,       steps, active_energy (kcal): one daily total
Cal, kJ)                                   per local day, at its midnight
SleepAnalysis (category)                   sleep Sessions; the day's main one gives
                                           sleep_duration, sleep_deep, sleep_rem
Workout                                    workout Sessions
=========================================  ==========================================

Steps and active energy arrive as many short samples, from the iPhone and the Watch at once,
overlapping.  Other providers give daily totals, so these are totalled per local day (the day
of the sample's own offset) and source, and the day's reading is the largest source's total:
summing the sources would count a walk twice.  Readings outside the window are dropped unseen,
as a REST provider would not ask for them.  A record that cannot be read (value, date or unit)
is passed on so the sync counts it invalid: a value as NaN, an unknown unit as itself, a bad
date as NaN at the window's end; a sleep or workout with a bad date as an empty session.

Expat keeps no tree, so nothing needs clearing.  The DTD's element and attribute declarations
are allowed; any entity declaration is refused (billion laughs, external entities), as
defusedxml's ``forbid_entities`` does.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from xml.parsers import expat

from db.metrics import Reading
from db.sessions import Session
from pipeline.errors import PermanentSyncError
from pipeline.providers.base import Window
from pipeline.vocabulary import FILED_BY_DAY, UNITS

# Segments of one source closer than this belong to the same night.
SLEEP_GAP = timedelta(minutes=30)
_Q = "HKQuantityTypeIdentifier"
QUANTITIES: dict[str, str] = {
    _Q + "HeartRate": "heart_rate",
    _Q + "RestingHeartRate": "resting_heart_rate",
    _Q + "HeartRateVariabilitySDNN": "hrv_sdnn",
    _Q + "BodyMass": "weight",
    _Q + "BloodPressureSystolic": "blood_pressure_systolic",
    _Q + "BloodPressureDiastolic": "blood_pressure_diastolic",
    _Q + "OxygenSaturation": "spo2",
    _Q + "RespiratoryRate": "respiratory_rate",
    _Q + "BodyTemperature": "body_temperature",
    _Q + "BloodGlucose": "glucose",
    _Q + "VO2Max": "vo2max",
}
DAILY: dict[str, str] = {_Q + "StepCount": "steps", _Q + "ActiveEnergyBurned": "active_energy"}
SLEEP = "HKCategoryTypeIdentifierSleepAnalysis"
_ASLEEP = "HKCategoryValueSleepAnalysisAsleep"
STAGES = {_ASLEEP + "Deep": "deep_min", _ASLEEP + "REM": "rem_min", _ASLEEP + "Core": "light_min"}
AWAKE = "HKCategoryValueSleepAnalysisAwake"

# (canonical unit, the export's unit) → conversion.  Anything else is passed on unconverted.
CONVERT: dict[tuple[str, str], Callable[[float], float]] = {
    ("bpm", "count/min"): float,
    ("/min", "count/min"): float,
    ("ms", "ms"): float,
    ("count", "count"): float,
    ("kg", "kg"): float,
    ("kg", "lb"): lambda v: v * 0.45359237,
    ("kg", "g"): lambda v: v / 1000,
    ("mmHg", "mmHg"): float,
    # HealthKit's percent unit is a fraction: 0.97 is 97 % (rounded: not 96.99999999999999).
    ("%", "%"): lambda v: round(v * 100, 9),
    ("°C", "degC"): float,
    ("°C", "degF"): lambda v: (v - 32) * 5 / 9,
    ("mg/dL", "mg/dL"): float,
    ("kcal", "kcal"): float,
    ("kcal", "Cal"): float,  # the large calorie
    ("kcal", "kJ"): lambda v: v / 4.184,
    ("mL/kg/min", "mL/min·kg"): float,
}
# Glucose in mmol/L carries its molar mass: "mmol<180.1558800000541>/L".
_MOLAR = re.compile(r"^mmol(?:<([0-9.]+)>)?/L$")
GLUCOSE_MOLAR_MASS = 180.15588
DISTANCE_M = {"m": 1.0, "km": 1000.0, "mi": 1609.344, "yd": 0.9144, "ft": 0.3048}
_DISTANCES = {_Q + "DistanceWalkingRunning", _Q + "DistanceCycling", _Q + "DistanceSwimming"}


def convert(unit: str, raw_unit: str, value: float) -> tuple[float, str]:
    """``value`` in ``unit`` and that unit, or unchanged with ``raw_unit`` when the unit is
    unknown (the sync then refuses it, naming the unit)."""
    if unit == "mg/dL" and (molar := _MOLAR.match(raw_unit)) is not None:
        return value * float(molar.group(1) or GLUCOSE_MOLAR_MASS) / 10, unit
    found = CONVERT.get((unit, raw_unit))
    return (found(value), unit) if found is not None else (value, raw_unit)


def _number(raw: str | None) -> float:
    try:
        return float(raw) if raw is not None else math.nan
    except ValueError:
        return math.nan


def _when(raw: str | None) -> datetime | None:
    """An aware datetime from the export's "2024-01-05 08:10:00 +0100", or None."""
    try:
        found = datetime.fromisoformat(raw) if raw else None
    except ValueError:
        return None
    return found if found is not None and found.tzinfo is not None else None


def _activity(raw: str | None) -> str | None:
    """The workout type in snake case: ``HKWorkoutActivityTypeHighIntensityIntervalTraining`` →
    ``high_intensity_interval_training``."""
    if not raw:
        return None
    name = raw.removeprefix("HKWorkoutActivityType")
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower() or None


@dataclass(slots=True)
class _Segment:
    source: str
    start: datetime
    end: datetime
    value: str


@dataclass(slots=True)
class _Night:
    """Merged segments of one source: a sleep session in the making."""

    start: datetime
    end: datetime
    minutes: dict[str, float] = field(default_factory=dict)
    asleep: float = 0.0

    def add(self, segment: _Segment) -> None:
        self.end = max(self.end, segment.end)
        minutes = (segment.end - segment.start).total_seconds() / 60
        key = STAGES.get(segment.value) or ("awake_min" if segment.value == AWAKE else None)
        if key is not None:
            self.minutes[key] = self.minutes.get(key, 0.0) + minutes
        if segment.value.startswith(_ASLEEP):
            self.asleep += minutes


class ExportReader:
    """Turns one export.xml, fed in chunks, into readings and sessions inside ``window``.

    Per-sample readings come out with each chunk (``drain``); daily totals and sleep sessions
    need the whole file and come out at the end (``finish``).  What is held meanwhile is small:
    a total per metric, day and source, and the sleep segments of the window.
    """

    def __init__(self, window: Window) -> None:
        self.window = window
        self._out: list[Reading | Session] = []
        self._totals: dict[tuple[str, date], dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self._zones: dict[tuple[str, date], tzinfo] = {}
        self._sleep: list[_Segment] = []
        self._workout: tuple[dict[str, str], dict[str, float]] | None = None
        self.parser = expat.ParserCreate()
        self.parser.StartElementHandler = self._start
        self.parser.EndElementHandler = self._end
        self.parser.EntityDeclHandler = _refuse_entity
        self.parser.ExternalEntityRefHandler = _refuse_external
        self.parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)

    def feed(self, chunk: bytes, final: bool = False) -> list[Reading | Session]:
        """Parse ``chunk``; the readings it completed.  Raises PermanentSyncError on bad XML."""
        try:
            self.parser.Parse(chunk, final)
        except expat.ExpatError as exc:
            raise PermanentSyncError(
                f"apple_health: the export is not well-formed XML ({expat.errors.messages[exc.code]},"
                f" line {exc.lineno}); readings before it were kept"
            ) from None
        out, self._out = self._out, []
        return out

    def _start(self, name: str, attrs: dict[str, str]) -> None:
        if name == "Record":
            kind = attrs.get("type", "")
            if (metric := QUANTITIES.get(kind)) is not None:
                self._sample(metric, attrs)
            elif (metric := DAILY.get(kind)) is not None:
                self._daily(metric, attrs)
            elif kind == SLEEP:
                self._segment(attrs)
        elif name == "Workout":
            self._workout = (attrs, {})
        elif name == "WorkoutStatistics" and self._workout is not None:
            _statistics(self._workout[1], attrs)

    def _end(self, name: str) -> None:
        if name == "Workout" and self._workout is not None:
            session = _workout(*self._workout, self.window)
            if session is not None:
                self._out.append(session)
            self._workout = None

    def _sample(self, metric: str, attrs: dict[str, str]) -> None:
        at = _when(attrs.get("startDate"))
        if at is None:
            self._out.append(Reading(metric, self.window.end, math.nan, UNITS[metric]))
        elif self.window.start <= at <= self.window.end:
            value, unit = convert(UNITS[metric], attrs.get("unit", ""), _number(attrs.get("value")))
            self._out.append(Reading(metric, at, value, unit))

    def _daily(self, metric: str, attrs: dict[str, str]) -> None:
        at = _when(attrs.get("startDate"))
        value, unit = convert(UNITS[metric], attrs.get("unit", ""), _number(attrs.get("value")))
        if at is None or unit != UNITS[metric] or not math.isfinite(value):
            # Not added to a total, where it would spoil the day: counted invalid on its own.
            self._out.append(Reading(metric, at or self.window.end, value if at else math.nan, unit))
            return
        # A day's total needs every sample of it: from the day before the window's start.
        if self.window.start - FILED_BY_DAY <= at <= self.window.end:
            day = at.date()
            self._totals[(metric, day)][attrs.get("sourceName", "")] += value
            self._zones.setdefault((metric, day), at.tzinfo or UTC)

    def _segment(self, attrs: dict[str, str]) -> None:
        start, end = _when(attrs.get("startDate")), _when(attrs.get("endDate"))
        if start is None or end is None:
            self._out.append(Session("sleep", self.window.end, self.window.end))
        elif end >= self.window.start - FILED_BY_DAY and start <= self.window.end:
            self._sleep.append(_Segment(attrs.get("sourceName", ""), start, end, attrs.get("value", "")))

    def finish(self) -> Iterator[Reading | Session]:
        """The daily totals and the sleep, once the whole file is read."""
        for (metric, day), sources in sorted(self._totals.items()):
            at = datetime.combine(day, time(0), self._zones[(metric, day)])
            if self.window.start <= at <= self.window.end:
                yield Reading(metric, at, max(sources.values()), UNITS[metric])
        yield from _sleep(self._sleep, self.window)


def _refuse_entity(name: str, *_: Any) -> None:
    raise PermanentSyncError(f"apple_health: the export declares the entity {name!r}; refused")


def _refuse_external(*_: Any) -> int:
    raise PermanentSyncError("apple_health: the export refers to an external entity; refused")


def _statistics(details: dict[str, float], attrs: dict[str, str]) -> None:
    """One ``<WorkoutStatistics>`` (iOS 16 and later) into a workout's details."""
    kind, unit = attrs.get("type", ""), attrs.get("unit", "")
    if kind == _Q + "ActiveEnergyBurned":
        value, unit = convert("kcal", unit, _number(attrs.get("sum")))
        if unit == "kcal":
            details["energy_kcal"] = value
    elif kind in _DISTANCES and unit in DISTANCE_M:
        details["distance_m"] = _number(attrs.get("sum")) * DISTANCE_M[unit]
    elif kind == _Q + "HeartRate" and unit == "count/min":
        details["avg_heart_rate_bpm"] = _number(attrs.get("average"))
        details["max_heart_rate_bpm"] = _number(attrs.get("maximum"))


def _workout(attrs: dict[str, str], details: dict[str, float], window: Window) -> Session | None:
    start, end = _when(attrs.get("startDate")), _when(attrs.get("endDate"))
    if start is None or end is None:
        return Session("workout", window.end, window.end)
    if not window.start <= end <= window.end:
        return None
    # Before iOS 16 the totals were attributes of the workout itself.
    if "energy_kcal" not in details and "totalEnergyBurned" in attrs:
        value, unit = convert("kcal", attrs.get("totalEnergyBurnedUnit", ""), _number(attrs["totalEnergyBurned"]))
        if unit == "kcal":
            details["energy_kcal"] = value
    distance_unit = attrs.get("totalDistanceUnit", "")
    if "distance_m" not in details and "totalDistance" in attrs and distance_unit in DISTANCE_M:
        details["distance_m"] = _number(attrs["totalDistance"]) * DISTANCE_M[distance_unit]
    return Session("workout", start, end, _activity(attrs.get("workoutActivityType")), details)


def _sleep(segments: list[_Segment], window: Window) -> Iterator[Reading | Session]:
    """Sleep sessions from the segments: per source, segments closer than SLEEP_GAP make one
    night; where nights of two sources overlap (the iPhone's time in bed, the Watch's stages),
    the one with the most time asleep is kept.  The longest-asleep night ending on a local day
    gives that day's sleep readings, dated at its end."""
    nights: list[_Night] = []
    by_source: dict[str, list[_Segment]] = defaultdict(list)
    for segment in segments:
        by_source[segment.source].append(segment)
    for source_segments in by_source.values():
        current: _Night | None = None
        for segment in sorted(source_segments, key=lambda s: s.start):
            if current is None or segment.start - current.end > SLEEP_GAP:
                current = _Night(segment.start, segment.end)
                nights.append(current)
            current.add(segment)
    kept: list[_Night] = []
    for night in sorted(nights, key=lambda n: n.start):
        if kept and night.start < kept[-1].end:
            if (night.asleep, night.end - night.start) > (kept[-1].asleep, kept[-1].end - kept[-1].start):
                kept[-1] = night
            continue
        kept.append(night)
    main: dict[date, _Night] = {}
    for night in kept:
        if not window.start - FILED_BY_DAY <= night.end <= window.end:
            continue
        yield Session("sleep", night.start, night.end, None, dict(night.minutes))
        day = night.end.date()
        if night.asleep > 0 and (day not in main or night.asleep > main[day].asleep):
            main[day] = night
    for night in main.values():
        if window.start <= night.end:
            yield Reading("sleep_duration", night.end, night.asleep, "min")
            for metric, key in (("sleep_deep", "deep_min"), ("sleep_rem", "rem_min")):
                if key in night.minutes:
                    yield Reading(metric, night.end, night.minutes[key], "min")
