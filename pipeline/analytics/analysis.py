"""One analysis of one user: every engine over the same readings, with no I/O.

The analytics actor and ``carebeacon analyze`` both call ``analyse``, so the numbers a care
team sees are the numbers an analyst can reproduce from a CSV.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from db.metrics import Reading
from pipeline.analytics import aggregates
from pipeline.analytics.baseline import BaselineRules
from pipeline.analytics.cgm import CgmMetrics, GlucoseEvent, cgm_metrics, glucose_events
from pipeline.analytics.clinical import ClinicalRules
from pipeline.analytics.columns import ReadingColumns
from pipeline.analytics.correlations import Correlation
from pipeline.analytics.correlations.stack import correlate_many
from pipeline.analytics.findings import Finding
from pipeline.analytics.scores import Score, ScoreInput, compute_scores_many
from pipeline.analytics.series import DailyData, median_of
from pipeline.analytics.thresholds import DEFAULT, Thresholds

CORRELATION_DAYS = 90
CGM_DAYS = 14
# Running totals: today's value is partial until the day ends.
PARTIAL_TODAY = ("steps", "active_energy")
Floats = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Analysis:
    day: date
    daily: aggregates.Daily
    correlations: tuple[Correlation, ...]
    scores: dict[str, Score]
    findings: tuple[Finding, ...]
    cgm: CgmMetrics | None

    def as_json(self) -> dict[str, Any]:
        return {
            "cgm": self.cgm.as_dict() if self.cgm else None,
            "daily": [s.as_dict() for s in self.daily.stats],
            "scores": {
                domain: {"day": s.day.isoformat(), "value": s.value, "reason": s.reason, "contributors": s.contributors}
                for domain, s in self.scores.items()
            },
            "anomalies": [f.as_dict() for f in self.findings],
            "correlations": [c.as_dict() for c in self.correlations],
        }


@dataclass(frozen=True, slots=True)
class Subject:
    """One user's readings and what ``analyse`` takes besides them."""

    readings: Sequence[Reading] | ReadingColumns
    timezone: str
    check_from: date | None = None
    today: date | None = None
    age: int | None = None
    thresholds: Thresholds | None = None


def analyse(
    readings: Sequence[Reading] | ReadingColumns,
    timezone: str,
    *,
    check_from: date | None = None,
    today: date | None = None,
    age: int | None = None,
    thresholds: Thresholds | None = None,
    min_pairs: int = 14,
    max_q: float | None = None,
) -> Analysis | None:
    """Analyse ``readings``; anomalies are looked for on local days from ``check_from`` (default:
    the latest day) to the latest day.  ``today`` is the local day still running, whose activity
    totals are partial and so never judged against a baseline.  Correlations are all pairs × lags,
    or only those with q ≤ ``max_q``.  None when there are no readings.

    ``readings`` may be ``Reading`` objects or the same readings as ``ReadingColumns`` (what a
    batch recompute fetches with ``db.analytics.readings``); the results are the same.

    A statistical finding on a metric and day that a clinical rule already flagged is dropped:
    the clinical alert says more, and a care team should not get two pages for one reading.
    """
    subject = Subject(readings, timezone, check_from, today, age, thresholds)
    return analyse_many([subject], min_pairs=min_pairs, max_q=max_q)[0]


def analyse_many(
    subjects: Sequence[Subject], *, min_pairs: int = 14, max_q: float | None = None
) -> list[Analysis | None]:
    """``analyse`` of each subject, in order, with the daily aggregates and the correlations of all
    of them computed together (``daily_many``, ``correlate_many``): the same results, for less
    time per user."""
    columns = [
        s.readings if isinstance(s.readings, ReadingColumns) else ReadingColumns.from_readings(s.readings)
        for s in subjects
    ]
    with_readings = [(own, s.timezone) for s, own in zip(subjects, columns, strict=True) if len(own)]
    dailies = iter(aggregates.daily_many(with_readings))
    prepared: list[tuple[Subject, ReadingColumns, aggregates.Daily, DailyData] | None] = []
    for subject, own in zip(subjects, columns, strict=True):
        daily = next(dailies) if len(own) else None
        prepared.append(None if daily is None else (subject, own, daily, daily.means))
    matrices = []
    for found in prepared:
        if found is not None:
            end = np.datetime64(found[2].latest, "D")
            matrices.append(found[2].matrix(end - (CORRELATION_DAYS - 1), end, without=("glucose",)))
    correlations = iter(correlate_many(matrices, min_pairs=min_pairs, max_q=max_q))
    # The scores of the batch's users are computed together too, and need each user's GRI first.
    cgms = [None if found is None else _cgm_of(found[1]) for found in prepared]
    scores = iter(
        compute_scores_many(
            [
                ScoreInput(found[3], found[2].latest, found[0].age, cgm.gri if cgm and cgm.sufficient else None)
                for found, cgm in zip(prepared, cgms, strict=True)
                if found is not None
            ]
        )
    )
    return [
        None if found is None else _analyse(*found, next(correlations), cgm, next(scores))
        for found, cgm in zip(prepared, cgms, strict=True)
    ]


def _analyse(
    subject: Subject,
    columns: ReadingColumns,
    daily: aggregates.Daily,
    means: DailyData,
    correlations: list[Correlation],
    cgm: CgmMetrics | None,
    scores: dict[str, Score],
) -> Analysis:
    thresholds = subject.thresholds or DEFAULT
    today = subject.today
    latest = daily.latest
    end = np.datetime64(latest, "D")

    glucose = columns.of("glucose")
    continuous = _is_cgm(glucose[0])
    differ = daily.low != daily.high
    several = daily.count > 1
    if continuous and "glucose" in daily.metrics:
        judged = daily.metric != daily.metrics.index("glucose")
        differ &= judged
        several &= judged
    # One reading a metric and day (daily summaries): the maxima are the means, v / 1 exactly, and
    # the rules share the means' series (and the day → value dicts they build).
    highs = dict(daily.maxima) if several.any() else dict(means)
    # One reading a metric and day (daily summaries): the minima are the maxima, judged once.
    lows = dict(daily.minima) if differ.any() else highs
    if continuous:
        # A CGM is judged by events of 15 minutes or more, never by single readings.
        lows.pop("glucose", None)
        highs.pop("glucose", None)
    whole_days = dict(means)
    if today is not None:
        whole_days |= {m: whole_days[m].before(np.datetime64(today, "D")) for m in PARTIAL_TODAY if m in whole_days}

    findings: list[Finding] = []
    flagged: dict[str, set[np.datetime64]] = {}
    first = np.datetime64(subject.check_from or latest, "D")
    clinical_rules = ClinicalRules(lows, highs, thresholds, first)
    baseline_rules = BaselineRules(whole_days)
    day = first
    while day <= end:
        clinical = clinical_rules.findings(day)
        covered = {f.metric for f in clinical}
        statistical = [f for f in baseline_rules.findings(day, flagged) if f.metric not in covered]
        for finding in statistical:
            flagged.setdefault(finding.metric, set()).add(day)
        findings += clinical + statistical
        day += 1
    if continuous:
        findings += _glucose_findings(*glucose, subject.timezone, first, end)
    return Analysis(latest, daily, tuple(correlations), scores, tuple(findings), cgm)


def _is_cgm(seconds: Floats) -> bool:
    """A trace rather than a meter: several readings with a median spacing of 15 minutes or less."""
    if len(seconds) < 3:
        return False
    return median_of(np.diff(np.sort(seconds))) <= 15 * 60


def _cgm_of(columns: ReadingColumns) -> CgmMetrics | None:
    glucose = columns.of("glucose")
    return _cgm(*glucose) if glucose[0].size else None


def _cgm(seconds: Floats, values: Floats) -> CgmMetrics | None:
    """Metrics over the 14 × 24 hours up to the newest reading: the consensus reporting period."""
    times = _whole_seconds(seconds)
    recent = times > times.max() - np.timedelta64(CGM_DAYS, "D")
    return cgm_metrics(times[recent], values[recent])


def _whole_seconds(seconds: Floats) -> npt.NDArray[np.datetime64]:
    """Truncated to whole seconds, as int(timestamp) does."""
    times: npt.NDArray[np.datetime64] = seconds.astype(np.int64).astype("datetime64[s]")
    return times


EVENT_FINDINGS: dict[str, tuple[str, str, str]] = {
    # level: (rule, severity, title); ADA §6 / Battelino 2023: level 2 needs action now.
    "hypo_l2": ("cgm-hypo-l2", "critical", "Level 2 hypoglycaemia event: glucose below 54 mg/dL for 15 min or more"),
    "hypo_l1": ("cgm-hypo-l1", "warning", "Level 1 hypoglycaemia event: glucose below 70 mg/dL for 15 min or more"),
    "hyper_l2": ("cgm-hyper-l2", "warning", "Level 2 hyperglycaemia event: glucose above 250 mg/dL for 15 min or more"),
    "hyper_l1": ("cgm-hyper-l1", "info", "Level 1 hyperglycaemia event: glucose above 180 mg/dL for 15 min or more"),
}
EVENT_LIMITS = {"hypo_l2": 54.0, "hypo_l1": 70.0, "hyper_l2": 250.0, "hyper_l1": 180.0}
# Within a kind, the more severe level wins: a level 2 event is also a level 1 event.
EVENT_ORDER = ("hypo_l2", "hypo_l1", "hyper_l2", "hyper_l1")


def _glucose_findings(
    seconds: Floats, values: Floats, timezone: str, start: np.datetime64, end: np.datetime64
) -> list[Finding]:
    """The most severe hypo and the most severe hyper event of each local day in range."""
    times = _whole_seconds(seconds)
    zone = ZoneInfo(timezone)
    worst: dict[tuple[str, date], GlucoseEvent] = {}
    for event in glucose_events(times, values):
        started = datetime.fromtimestamp(int(event.start.astype("datetime64[s]").astype(int)), UTC)
        day = started.astimezone(zone).date()
        if not start <= np.datetime64(day, "D") <= end:
            continue
        kind = event.level.split("_")[0]
        current = worst.get((kind, day))
        if current is None or EVENT_ORDER.index(event.level) < EVENT_ORDER.index(current.level):
            worst[(kind, day)] = event
    found = []
    for (_, day), event in sorted(worst.items(), key=lambda item: (item[0][1], item[0][0])):
        rule, severity, title = EVENT_FINDINGS[event.level]
        found.append(
            Finding(
                metric="glucose",
                day=day,
                kind="clinical",
                rule=rule,
                rule_version=1,
                severity=severity,  # type: ignore[arg-type]
                category="glycemic",
                value=float(event.extreme),
                baseline=EVENT_LIMITS[event.level],
                title=title,
                detail=f"from {event.start} to {event.end} UTC, extreme {event.extreme:g} mg/dL",
            )
        )
    return found


def check_from(window_start_day: date, latest: date, days: int = 3) -> date:
    """Where the actor starts looking for anomalies: the sync window, at most ``days`` back."""
    return max(window_start_day, latest - timedelta(days=days - 1))


__all__ = ["Analysis", "Subject", "analyse", "analyse_many", "check_from"]
