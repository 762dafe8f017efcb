"""Clinical rules (reference: health-analytics §2, detector stack §3.5 step 1).

They fire at once and need no baseline.  Every limit comes from a per-patient ``Thresholds``.
``clinical_findings`` judges one local day of ``DailyData`` (one value per metric per day: the
caller decides which, e.g. the night's minimum SpO₂); ``evaluate`` is the entry point the sync
uses: raw readings in, deduplicated ``NewAlert`` rows out.

Rules come in ladders (most severe level first, e.g. spo2-critical before spo2-low): a day
yields at most one finding per ladder, the highest level that fires.  Each level has its own
rule id, so a day that first alerts at "warning" and later at "critical" raises a second alert
instead of being swallowed by the first one's dedupe key.
"""

from __future__ import annotations

__all__ = [
    "ClinicalRules",
    "LADDERS",
    "Ladder",
    "Level",
    "NEWS2_MIN_PARAMETERS",
    "RULE_VERSION",
    "WEEK_DAYS",
    "clinical_findings",
    "evaluate",
]

import bisect
import math
import operator
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Final, Literal
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from db.alerts import NewAlert
from db.metrics import Reading
from pipeline.analytics.findings import Category, Finding, Severity, as_date, day_number, to_alert
from pipeline.analytics.series import DailyData, DailySeries
from pipeline.analytics.thresholds import DEFAULT, Thresholds
from pipeline.vocabulary import UNITS

RULE_VERSION: Final = 1
Op = Literal[">", ">=", "<"]
_OPS: dict[Op, tuple[Callable[[float, float], bool], str]] = {
    ">": (operator.gt, "above"),
    ">=": (operator.ge, "at or above"),
    "<": (operator.lt, "below"),
}
GLYCEMIC: Category = "glycemic"


@dataclass(frozen=True, slots=True)
class Level:
    rule: str
    severity: Severity
    op: Op
    limit: Callable[[Thresholds], float]
    title: str  # formatted with {limit:g}
    category: Category = "clinical"


@dataclass(frozen=True, slots=True)
class Ladder:
    metric: str
    levels: tuple[Level, ...]  # most severe first

    @property
    def group(self) -> str:
        """The ladder's name: its least severe rule's id."""
        return self.levels[-1].rule


LADDERS: tuple[Ladder, ...] = (
    Ladder(
        "resting_heart_rate",
        (Level("rhr-high", "warning", ">", lambda t: t.rhr_high, "Resting heart rate above {limit:g} bpm"),),
    ),
    Ladder(
        "resting_heart_rate",
        (Level("rhr-low", "warning", "<", lambda t: t.rhr_low, "Resting heart rate below {limit:g} bpm"),),
    ),
    Ladder(
        "spo2",
        (
            Level("spo2-critical", "critical", "<", lambda t: t.spo2_critical, "Blood oxygen below {limit:g} %"),
            Level("spo2-low", "warning", "<", lambda t: t.spo2_low, "Blood oxygen below {limit:g} %"),
        ),
    ),
    # body_temperature only: skin_temp_deviation is not core temperature (§2) and has no rule here.
    Ladder(
        "body_temperature",
        (Level("fever", "warning", ">=", lambda t: t.fever_c, "Fever: body temperature {limit:g} °C or higher"),),
    ),
    Ladder(
        "respiratory_rate",
        (
            Level("rr-critical", "critical", ">", lambda t: t.rr_critical, "Respiratory rate above {limit:g}/min"),
            Level("rr-high", "warning", ">", lambda t: t.rr_high, "Respiratory rate above {limit:g}/min"),
        ),
    ),
    Ladder(
        "respiratory_rate",
        (Level("rr-low", "warning", "<", lambda t: t.rr_low, "Respiratory rate below {limit:g}/min"),),
    ),
    Ladder(
        "glucose",
        (
            Level(
                "glucose-hypo-l2",
                "critical",
                "<",
                lambda t: t.glucose_hypo_l2,
                "Level 2 hypoglycaemia: glucose below {limit:g} mg/dL",
                GLYCEMIC,
            ),
            Level(
                "glucose-hypo-l1",
                "warning",
                "<",
                lambda t: t.glucose_hypo_l1,
                "Level 1 hypoglycaemia: glucose below {limit:g} mg/dL",
                GLYCEMIC,
            ),
        ),
    ),
    Ladder(
        "glucose",
        (
            Level(
                "glucose-hyper-l2",
                "warning",
                ">",
                lambda t: t.glucose_hyper_l2,
                "Level 2 hyperglycaemia: glucose above {limit:g} mg/dL",
                GLYCEMIC,
            ),
        ),
    ),
)

# Blood pressure (2017 ACC/AHA): (rule, severity, name, op, systolic limit, diastolic limit), highest first.
_BP_LEVELS: tuple[tuple[str, Severity, str, Op, Callable[[Thresholds], tuple[float, float]]], ...] = (
    ("bp-crisis", "critical", "Hypertensive crisis", ">", lambda t: (t.bp_crisis_systolic, t.bp_crisis_diastolic)),
    ("bp-stage2", "warning", "Stage 2 hypertension", ">=", lambda t: (t.bp_stage2_systolic, t.bp_stage2_diastolic)),
    ("bp-stage1", "info", "Stage 1 hypertension", ">=", lambda t: (t.bp_stage1_systolic, t.bp_stage1_diastolic)),
)

# NEWS2 bands (RCP 2017, §2).  Edges sit half-way between charted values, so a wearable's 20.4/min
# scores as 20 and 20.5 as 21 (round half up, as charted); temperature is charted to 0.1 °C.
# Pulse is the resting heart rate: the one pulse a day of wearable data has.
_NEWS2: tuple[tuple[str, str, tuple[float, ...], tuple[int, ...]], ...] = (
    ("respiratory_rate", "respiration rate", (8.5, 11.5, 20.5, 24.5), (3, 1, 0, 2, 3)),
    ("spo2", "SpO₂ scale 1", (91.5, 93.5, 95.5), (3, 2, 1, 0)),
    ("blood_pressure_systolic", "systolic BP", (90.5, 100.5, 110.5, 219.5), (3, 2, 1, 0, 3)),
    ("resting_heart_rate", "pulse (resting HR)", (40.5, 50.5, 90.5, 110.5, 130.5), (3, 1, 0, 1, 2, 3)),
    ("body_temperature", "temperature", (35.05, 36.05, 38.05, 39.05), (3, 1, 0, 1, 2)),
)
# NEWS2 parameters a wearable feed never has: always reported as not measured.
_NEWS2_NEVER = ("consciousness (ACVPU)", "supplemental oxygen")
# One parameter alone is already judged by its own rule; an "aggregate" of one adds only noise.
NEWS2_MIN_PARAMETERS: Final = 2
# Every metric a rule reads: the ladders, blood pressure, weight and NEWS2.
_READ = tuple(
    dict.fromkeys(
        [ladder.metric for ladder in LADDERS]
        + ["blood_pressure_systolic", "blood_pressure_diastolic", "weight"]
        + [metric for metric, *_ in _NEWS2]
    )
)
WEEK_DAYS: Final = 7  # the weekly weight rule looks this far back; no rule looks further
# Per metric a rule reads, its values from one day on, a day apart: None on a day without one.
Recent = dict[str, list[float | None]]


def clinical_findings(daily: DailyData, day: np.datetime64, thresholds: Thresholds) -> list[Finding]:
    """Every clinical rule that fires on local ``day``; [] when nothing does.

    Reads ``daily[metric]`` on ``day`` (weight also on the day before and the 7 days before).
    A metric with no value that day is skipped, never guessed.  Pure: no I/O, no clock.
    """
    when = as_date(day)
    return _findings(_recent(daily, day_number(when) - WEEK_DAYS), WEEK_DAYS, when, thresholds)


class ClinicalRules:
    """``strongest_findings`` for any day from ``first`` on, of one patient's minima and maxima.

    The rules judge a few days of the same series: each series' values from a week before
    ``first`` are read into a list once, which costs less than a dict of the whole history or a
    binary search per metric and day.
    """

    def __init__(self, lows: DailyData, highs: DailyData, thresholds: Thresholds, first: np.datetime64) -> None:
        self._since = day_number(as_date(first)) - WEEK_DAYS
        views = (highs,) if lows is highs else (highs, lows)
        self._views = tuple(_recent(view, self._since) for view in views)
        self._thresholds = thresholds

    def findings(self, day: np.datetime64) -> list[Finding]:
        """What ``strongest_findings`` finds on ``day``; ValueError for a day before ``first``."""
        when = as_date(day)
        index = day_number(when) - self._since
        if index < WEEK_DAYS:
            raise ValueError(f"{when} is before the first day these rules judge")
        kept: dict[tuple[str, str, date], Finding] = {}
        for view in self._views:
            for finding in _findings(view, index, when, self._thresholds):
                key = (_GROUP.get(finding.rule, finding.rule), finding.metric, finding.day)
                if key not in kept or _strength(finding) > _strength(kept[key]):
                    kept[key] = finding
        return list(kept.values())


def _findings(recent: Recent, day: int, when: date, thresholds: Thresholds) -> list[Finding]:
    """The clinical findings on ``recent``'s ``day``-th day, ``when``."""
    # Each metric once: several rules read the same ones (resting HR three, SpO₂ two).
    on_day = {
        metric: value for metric, values in recent.items() if day < len(values) and (value := values[day]) is not None
    }
    found: list[Finding] = []
    for ladder in LADDERS:
        value = on_day.get(ladder.metric)
        if value is not None:
            hit = _ladder(ladder, value, when, thresholds)
            if hit is not None:
                found.append(hit)
    bp = _blood_pressure(on_day, when, thresholds)
    if bp is not None:
        found.append(bp)
    found += _weight(recent.get("weight", []), day, when, thresholds)
    news2 = _news2(on_day, when, thresholds)
    if news2 is not None:
        found.append(news2)
    return found


def _recent(daily: DailyData, since: int) -> Recent:
    """Per metric a rule reads, its values on day numbers ``since``, ``since + 1``, … to its
    last day."""
    found: Recent = {}
    for metric in _READ:
        series = daily.get(metric)
        if series is None or not len(series):
            continue
        days = series.day_numbers()
        count = int(days[-1]) - since + 1  # days from ``since`` to the last
        if count <= 0:
            continue
        # Days are unique and ascending: when the count-th last is ``since``, no day is missing.
        if count <= days.size and int(days[-count]) == since:
            found[metric] = series.values[-count:].tolist()
        else:
            by_day = dict(zip(days[-count:].tolist(), series.values[-count:].tolist(), strict=True))
            found[metric] = [by_day.get(d) for d in range(since, since + count)]
    return found


def evaluate(
    user_id: int, readings: Iterable[Reading], thresholds: Thresholds = DEFAULT, timezone: str = "UTC"
) -> list[NewAlert]:
    """Alerts for every local day the readings cover, at most one per dedupe key.

    Several readings of a metric on one day (a meter's glucose, repeated BP) are reduced twice,
    to the day's minimum and maximum, and both views are judged: a day with glucose 60 and 260
    alerts for both.  Per ladder and day the more severe finding is kept (then the one further
    past its limit).  Glucose days that look like a CGM trace (≥ 3 readings, median spacing
    ≤ 15 min) are left to the CGM event rules: single-reading glucose rules are for a meter.
    ``timezone`` decides the local day; the default, UTC, is what the caller has always used.
    """
    lows, highs = _daily_extremes(readings, ZoneInfo(timezone))
    days = np.unique(np.concatenate([s.days for s in highs.values()])) if highs else np.array([], "datetime64[D]")
    return [to_alert(finding, user_id) for day in days for finding in strongest_findings(lows, highs, day, thresholds)]


def strongest_findings(lows: DailyData, highs: DailyData, day: np.datetime64, thresholds: Thresholds) -> list[Finding]:
    """Judge the day's minima and maxima both; per rule ladder keep the more severe finding
    (then the one further past its limit).  ``lows is highs`` judges the one view once: a
    second pass over the same values would only find what the first kept.  ``ClinicalRules``
    judges several days of the same data for less."""
    return ClinicalRules(lows, highs, thresholds, day).findings(day)


_GROUP = {level.rule: ladder.group for ladder in LADDERS for level in ladder.levels} | {
    rule: "bp" for rule, *_ in _BP_LEVELS
}


def _strength(finding: Finding) -> tuple[int, float]:
    return finding.rank, abs(finding.value - (finding.baseline if finding.baseline is not None else 0.0))


def _daily_extremes(readings: Iterable[Reading], tz: ZoneInfo) -> tuple[dict[str, DailySeries], dict[str, DailySeries]]:
    """Per metric, each local day's minimum and maximum value; CGM glucose days left out."""
    stamps: dict[str, list[datetime]] = defaultdict(list)
    values: dict[str, list[float]] = defaultdict(list)
    for reading in readings:
        stamps[reading.metric].append(reading.recorded_at.astimezone(tz))
        values[reading.metric].append(reading.value)
    lows: dict[str, DailySeries] = {}
    highs: dict[str, DailySeries] = {}
    for metric, when in stamps.items():
        # Local wall-clock time: its day part is the local day.
        local = np.array([t.replace(tzinfo=None) for t in when], dtype="datetime64[m]")
        observed = np.array(values[metric], dtype=float)
        if metric == "glucose":
            keep = ~_cgm_trace(local)
            local, observed = local[keep], observed[keep]
            if not keep.any():
                continue
        unique, index = np.unique(local.astype("datetime64[D]"), return_inverse=True)
        low = np.full(unique.shape, np.inf)
        high = np.full(unique.shape, -np.inf)
        np.minimum.at(low, index, observed)
        np.maximum.at(high, index, observed)
        lows[metric], highs[metric] = DailySeries(unique, low), DailySeries(unique, high)
    return lows, highs


def _cgm_trace(local: npt.NDArray[np.datetime64]) -> npt.NDArray[np.bool_]:
    """Which glucose readings belong to a CGM trace: a local day with ≥ 3 readings whose median
    spacing is ≤ 15 min (CGM samples every 5 or 15 min; nobody pricks a finger that often).

    A CGM's single reading is not an event: §2 wants the ≥ 15-minute event rules for CGM, which
    ``pipeline.analytics.cgm.glucose_events`` implements, and single readings only for a meter.
    """
    order = np.argsort(local, kind="stable")
    times = local[order]
    day = times.astype("datetime64[D]")
    unique, index, counts = np.unique(day, return_inverse=True, return_counts=True)
    gaps = np.diff(times).astype(float)
    same_day = day[1:] == day[:-1]
    trace = np.zeros(unique.shape, dtype=bool)
    for i in np.nonzero(counts >= 3)[0]:
        inside = same_day & (index[1:] == i)
        trace[i] = float(np.median(gaps[inside])) <= 15.0
    result = np.empty(local.shape, dtype=bool)
    result[order] = trace[index]
    return result


def _ladder(ladder: Ladder, value: float, day: date, t: Thresholds) -> Finding | None:
    for level in ladder.levels:
        limit = level.limit(t)
        fires, phrase = _OPS[level.op]
        if fires(value, limit):
            unit = UNITS.get(ladder.metric, "")
            return Finding(
                metric=ladder.metric,
                day=day,
                kind="clinical",
                rule=level.rule,
                rule_version=RULE_VERSION,
                severity=level.severity,
                category=level.category,
                value=value,
                baseline=limit,
                title=level.title.format(limit=limit),
                detail=f"{ladder.metric} {value:g} {unit}: {phrase} the limit of {limit:g} {unit}.",
            )
    return None


def _blood_pressure(on_day: dict[str, float], when: date, t: Thresholds) -> Finding | None:
    """The highest ACC/AHA category reached by systolic or diastolic; either alone is enough."""
    systolic = on_day.get("blood_pressure_systolic")
    diastolic = on_day.get("blood_pressure_diastolic")
    if systolic is None and diastolic is None:
        return None
    for rule, severity, name, op, limits in _BP_LEVELS:
        fires, phrase = _OPS[op]
        sys_limit, dia_limit = limits(t)
        for value, limit, which in ((systolic, sys_limit, "systolic"), (diastolic, dia_limit, "diastolic")):
            if value is not None and fires(value, limit):
                return Finding(
                    metric="blood_pressure",
                    day=when,
                    kind="clinical",
                    rule=rule,
                    rule_version=RULE_VERSION,
                    severity=severity,
                    category="clinical",
                    value=value,
                    baseline=limit,
                    title=f"Blood pressure {_fmt(systolic)}/{_fmt(diastolic)} mmHg: {name.lower()}",
                    detail=f"{name}: {which} {value:g} mmHg is {phrase} {limit:g} (2017 ACC/AHA categories).",
                )
    return None


def _weight(weights: list[float | None], day: int, when: date, t: Thresholds) -> list[Finding]:
    """Heart-failure weight gain: against yesterday's weight, and against the week's lowest.

    The day rule needs a weight on the previous day (a gain over a gap is not "in a day"); the
    week rule compares with the lowest weight of the 7 days before, so a rise at any point of
    the week counts.  Gains are rounded to 1e-6 kg so float noise never decides a boundary.
    ``weights`` are a day apart; ``day`` indexes today's, at least a week in.
    """
    today = weights[day] if day < len(weights) else None
    if today is None:
        return []
    found: list[Finding] = []
    # The week's lowest as np.nanmin has it: NaN left out, and none without a finite weight.
    week = [v for v in weights[day - WEEK_DAYS : day] if v is not None and not math.isnan(v)]
    checks = (
        ("weight-gain-day", "in a day", weights[day - 1], t.weight_gain_day_kg),
        ("weight-gain-week", "in a week", min(week) if any(map(math.isfinite, week)) else None, t.weight_gain_week_kg),
    )
    for rule, span, before, limit in checks:
        # Rounding moves a gain by under 1e-6 kg: one further below the limit than 1e-3 kg is
        # decided without it (round to 6 places costs ~1 µs).
        if before is None or today - before <= limit - 1e-3:
            continue
        gain = round(today - before, 6)
        if gain > limit:
            found.append(
                Finding(
                    metric="weight",
                    day=when,
                    kind="clinical",
                    rule=rule,
                    rule_version=RULE_VERSION,
                    severity="warning",
                    category="clinical",
                    value=gain,
                    baseline=limit,
                    title=f"Weight up more than {limit:g} kg {span}",
                    detail=f"weight {today:g} kg, up {gain:g} kg from {before:g} kg {span} (limit {limit:g} kg).",
                )
            )
    return found


def _news2(on_day: dict[str, float], when: date, t: Thresholds) -> Finding | None:
    """The NEWS2 aggregate over the parameters measured that day; None below any trigger.

    Parameters not measured are left out (they would score 0) and listed in the detail, so the
    care team knows the total may be low.  SpO₂ is left out when the patient's target is lowered
    below 92 %: NEWS2 then prescribes scale 2, which this rule does not implement.
    """
    # NEWS2 scale 1 does not apply to SpO₂ under a lowered target (see above).
    left_out = "spo2" if t.spo2_low < 92.0 else None
    # (label, value, points) of each parameter measured.  The number of edges at or below the
    # value indexes the points (the edges ascend).  Plain Python: five values a day, where a
    # dozen numpy calls cost more than the rule.
    scored = [
        (label, value, scale[bisect.bisect_right(edges, value)])
        for metric, label, edges, scale in _NEWS2
        if metric != left_out and math.isfinite(value := on_day.get(metric, math.nan))
    ]
    if len(scored) < NEWS2_MIN_PARAMETERS:
        return None
    points = [p for _, _, p in scored]
    total = sum(points)
    rule: str
    severity: Severity
    if total >= t.news2_emergency:
        rule, severity, limit, what = "news2-emergency", "critical", t.news2_emergency, "emergency response"
    elif total >= t.news2_urgent:
        rule, severity, limit, what = "news2-urgent", "warning", t.news2_urgent, "urgent response"
    elif 3 in points:
        rule, severity, limit, what = "news2-low-medium", "info", 3, "low-medium: one parameter scored 3"
    else:
        return None
    parts = [f"{label} {v:g} → {p}" for label, v, p in scored]
    measured = {label for label, _, _ in scored}
    missing = [label for _, label, _, _ in _NEWS2 if label not in measured] + list(_NEWS2_NEVER)
    return Finding(
        metric="news2",
        day=when,
        kind="clinical",
        rule=rule,
        rule_version=RULE_VERSION,
        severity=severity,
        category="clinical",
        value=float(total),
        baseline=float(limit),
        title=f"NEWS2 {total}: {what}",
        detail=f"NEWS2 total {total} from {', '.join(parts)}. Not measured, so not scored: {', '.join(missing)}.",
    )


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:g}"
