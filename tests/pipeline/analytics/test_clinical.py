"""Clinical rules, thresholds and findings (reference: health-analytics §2 and §7 V26)."""

from __future__ import annotations

import dataclasses
import importlib
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from db.metrics import Reading
from pipeline.analytics.clinical import ClinicalRules, clinical_findings, evaluate, strongest_findings
from pipeline.analytics.findings import CATEGORIES, Finding, to_alert
from pipeline.analytics.series import DailyData, DailySeries
from pipeline.analytics.thresholds import LB, Thresholds
from pipeline.vocabulary import UNITS

DAY = "2024-03-06"
DEFAULT = Thresholds()


def on_day(thresholds: Thresholds = DEFAULT, **values: float | None) -> list[Finding]:
    """The findings for DAY when each keyword metric has that one value (None: not measured)."""
    daily: DailyData = {m: DailySeries.of({DAY: v}) for m, v in values.items() if v is not None}
    return clinical_findings(daily, np.datetime64(DAY), thresholds)


def rules(findings: list[Finding]) -> list[str]:
    return [f.rule for f in findings]


def reading(metric: str, value: float, at: datetime) -> Reading:
    return Reading(metric, at, value, UNITS[metric])


MORNING = datetime(2024, 3, 6, 7, tzinfo=UTC)


# --- single-value rules: both sides of every boundary -----------------------------------------

SINGLE = [
    # V26: HR 101 → tachycardia, 100 → not; 49 → bradycardia (< 50), 50 → not.
    ("resting_heart_rate", 101, "rhr-high", "warning"),
    ("resting_heart_rate", 100, None, None),
    ("resting_heart_rate", 49, "rhr-low", "warning"),
    ("resting_heart_rate", 50, None, None),
    # V26: 38.0 °C → fever, 37.9 → not.
    ("body_temperature", 38.0, "fever", "warning"),
    ("body_temperature", 37.9, None, None),
    ("spo2", 91, "spo2-low", "warning"),
    ("spo2", 92, None, None),
    ("spo2", 87, "spo2-critical", "critical"),
    ("spo2", 88, "spo2-low", "warning"),
    ("respiratory_rate", 25, "rr-high", "warning"),
    ("respiratory_rate", 24, None, None),
    ("respiratory_rate", 31, "rr-critical", "critical"),
    ("respiratory_rate", 30, "rr-high", "warning"),
    ("respiratory_rate", 8, "rr-low", "warning"),
    ("respiratory_rate", 9, None, None),
    # V26: glucose 69 → L1, 53 → L2, 251 → L2 hyper.
    ("glucose", 69, "glucose-hypo-l1", "warning"),
    ("glucose", 70, None, None),
    ("glucose", 53, "glucose-hypo-l2", "critical"),
    ("glucose", 54, "glucose-hypo-l1", "warning"),
    ("glucose", 251, "glucose-hyper-l2", "warning"),
    ("glucose", 250, None, None),
]


@pytest.mark.parametrize(("metric", "value", "rule", "severity"), SINGLE)
def test_each_single_value_rule_fires_just_past_its_limit_and_not_at_it(
    metric: str, value: float, rule: str | None, severity: str | None
) -> None:
    found = on_day(**{metric: value})
    assert [(f.rule, f.severity) for f in found] == ([(rule, severity)] if rule else [])
    for finding in found:
        assert (finding.metric, finding.value, finding.kind) == (metric, value, "clinical")
        assert finding.category == ("glycemic" if metric == "glucose" else "clinical")


def test_tachycardia_reports_the_threshold_it_used_as_its_baseline() -> None:
    (finding,) = on_day(resting_heart_rate=118)
    assert (finding.baseline, finding.title) == (100.0, "Resting heart rate above 100 bpm")


def test_a_skin_temperature_deviation_of_plus_two_never_triggers_fever() -> None:
    assert on_day(skin_temp_deviation=2.0) == []
    assert rules(on_day(skin_temp_deviation=2.0, body_temperature=36.8)) == []


# --- blood pressure ------------------------------------------------------------------------------

BP = [
    ((181, 70), "bp-crisis", "critical"),
    ((180, 70), "bp-stage2", "warning"),  # crisis is strict: > 180
    ((120, 121), "bp-crisis", "critical"),
    ((120, 120), "bp-stage2", "warning"),  # > 120 only
    ((140, 70), "bp-stage2", "warning"),
    ((139, 70), "bp-stage1", "info"),
    ((125, 90), "bp-stage2", "warning"),  # the higher category (diastolic) wins
    ((150, 85), "bp-stage2", "warning"),  # the higher category (systolic) wins
    ((130, 79), "bp-stage1", "info"),
    ((129, 80), "bp-stage1", "info"),
    ((129, 79), None, None),
    ((185, None), "bp-crisis", "critical"),  # one side measured is enough
    ((None, 85), "bp-stage1", "info"),
]


@pytest.mark.parametrize(("pressure", "rule", "severity"), BP)
def test_blood_pressure_takes_the_highest_acc_aha_category(
    pressure: tuple[float | None, float | None], rule: str | None, severity: str | None
) -> None:
    systolic, diastolic = pressure
    found = on_day(blood_pressure_systolic=systolic, blood_pressure_diastolic=diastolic)
    assert [(f.rule, f.severity, f.metric) for f in found] == ([(rule, severity, "blood_pressure")] if rule else [])


# --- heart-failure weight ----------------------------------------------------------------------


def weights(pairs: dict[str, float]) -> list[Finding]:
    return clinical_findings({"weight": DailySeries.of(pairs)}, np.datetime64(DAY), DEFAULT)


def test_a_gain_of_1_4_kg_in_a_day_alerts_at_the_3_lb_rule() -> None:
    (finding,) = weights({"2024-03-05": 80.0, DAY: 81.4})
    assert (finding.rule, finding.severity, finding.value, finding.baseline) == (
        "weight-gain-day",
        "warning",
        1.4,
        1.36,
    )


@pytest.mark.parametrize(("today", "fires"), [(71.36, False), (71.37, True)])
def test_the_daily_weight_rule_is_strictly_above_1_36_kg(today: float, fires: bool) -> None:
    assert rules(weights({"2024-03-05": 70.0, DAY: today})) == (["weight-gain-day"] if fires else [])


@pytest.mark.parametrize(("today", "fires"), [(72.268, False), (72.27, True)])
def test_the_weekly_weight_rule_is_strictly_above_5_lb_against_the_weeks_lowest(today: float, fires: bool) -> None:
    found = weights({"2024-02-28": 70.5, "2024-02-29": 70.0, "2024-03-03": 71.0, DAY: today})
    assert rules(found) == (["weight-gain-week"] if fires else [])


def test_the_daily_weight_rule_needs_yesterdays_weight() -> None:
    assert rules(weights({"2024-03-04": 70.0, DAY: 71.5})) == []


def test_weights_older_than_a_week_are_not_compared() -> None:
    assert rules(weights({"2024-02-27": 60.0, DAY: 70.0})) == []


def test_the_default_weight_limits_are_3_lb_a_day_and_5_lb_a_week() -> None:
    # V26: 2 lb = 0.907 kg; 5 lb = 2.268 kg.
    assert round(2 * LB, 3) == 0.907
    assert DEFAULT.weight_gain_week_kg == 2.268 == round(5 * LB, 3)
    assert DEFAULT.weight_gain_day_kg == pytest.approx(3 * LB, abs=0.001)


# --- NEWS2 -------------------------------------------------------------------------------------


def news2(**values: float | None) -> list[Finding]:
    return [f for f in on_day(**values) if f.metric == "news2"]


NEWS2 = [
    # (RR, SpO2, SBP, pulse, temperature) → (rule, severity, total)
    ((22, 95, 105, 80, 37.0), None, None, None),  # 2 + 1 + 1 + 0 + 0 = 4
    ((22, 95, 105, 95, 37.0), "news2-urgent", "warning", 5),  # + pulse 1
    ((22, 93, 105, 95, 37.0), "news2-urgent", "warning", 6),
    ((22, 93, 105, 95, 38.5), "news2-emergency", "critical", 7),
    ((26, 97, None, None, None), "news2-low-medium", "info", 3),  # a single 3
    ((24.4, 97, None, None, None), None, None, None),  # 24.4 charts as 24: 2 points
    ((24.5, 97, None, None, None), "news2-low-medium", "info", 3),  # 24.5 charts as 25: 3 points
]


@pytest.mark.parametrize(("vitals", "rule", "severity", "total"), NEWS2)
def test_news2_totals_map_to_the_rcp_responses(
    vitals: tuple[float | None, ...], rule: str | None, severity: str | None, total: int | None
) -> None:
    rr, spo2, sbp, pulse, temp = vitals
    found = news2(
        respiratory_rate=rr, spo2=spo2, blood_pressure_systolic=sbp, resting_heart_rate=pulse, body_temperature=temp
    )
    assert [(f.rule, f.severity, f.value) for f in found] == ([(rule, severity, total)] if rule else [])


def test_news2_says_which_parameters_were_not_measured() -> None:
    (finding,) = news2(respiratory_rate=26, spo2=97)
    assert "Not measured, so not scored: systolic BP, pulse (resting HR), temperature" in finding.detail
    assert "consciousness" in finding.detail and "supplemental oxygen" in finding.detail


def test_news2_needs_two_measured_parameters() -> None:
    assert rules(on_day(resting_heart_rate=135)) == ["rhr-high"]


# --- per-patient thresholds --------------------------------------------------------------------


def test_a_copd_target_of_88_stops_the_alert_at_90() -> None:
    copd = Thresholds.from_dict({"spo2_low": 88})
    assert rules(on_day(spo2=90, respiratory_rate=14)) == ["spo2-low", "news2-low-medium"]
    # NEWS2 scale 1 would score 90 % as 3: with a hypercapnic target SpO₂ leaves the aggregate too.
    assert on_day(copd, spo2=90, respiratory_rate=14) == []
    assert rules(on_day(copd, spo2=87, respiratory_rate=14)) == ["spo2-critical"]


def test_a_care_team_can_raise_the_tachycardia_limit() -> None:
    assert on_day(Thresholds.from_dict({"rhr_high": 120}), resting_heart_rate=118) == []


def test_from_dict_keeps_the_defaults_for_absent_keys_and_stores_floats() -> None:
    assert Thresholds.from_dict({}) == DEFAULT
    tuned = Thresholds.from_dict({"spo2_low": 88, "news2_urgent": 4})
    assert dataclasses.replace(tuned, spo2_low=92.0, news2_urgent=5) == DEFAULT
    assert isinstance(tuned.spo2_low, float) and tuned.spo2_low == 88.0


BAD_THRESHOLDS: list[tuple[dict[str, Any], str]] = [
    ({"spo2_target": 88}, "unknown threshold key 'spo2_target'"),
    ({"spo2_low": "88"}, "threshold spo2_low must be a number, got str"),
    ({"spo2_low": True}, "threshold spo2_low must be a number, got bool"),
    ({"spo2_low": None}, "threshold spo2_low must be a number, got NoneType"),
    ({"fever_c": float("nan")}, "threshold fever_c must be a positive finite number"),
    ({"rhr_high": -1}, "threshold rhr_high must be a positive finite number"),
    ({"news2_urgent": 5.5}, "threshold news2_urgent must be a whole number"),
    ({"spo2_critical": 93}, "threshold spo2_critical (93) must not exceed spo2_low (92)"),
    ({"rhr_low": 101}, "threshold rhr_low (101) must not exceed rhr_high (100)"),
    ({"news2_urgent": 8}, "threshold news2_urgent (8) must not exceed news2_emergency (7)"),
]


@pytest.mark.parametrize(("raw", "message"), BAD_THRESHOLDS)
def test_from_dict_rejects_bad_thresholds_with_a_message_naming_the_key(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        Thresholds.from_dict(raw)
    assert str(caught.value).startswith(message)


def test_thresholds_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT.spo2_low = 88.0  # type: ignore[misc]


# --- findings and alerts -----------------------------------------------------------------------


def tachycardia(day: date = date(2024, 3, 6), rule: str = "rhr-high") -> Finding:
    return Finding(
        metric="resting_heart_rate",
        day=day,
        kind="clinical",
        rule=rule,
        rule_version=1,
        severity="warning",
        category="clinical",
        value=118.0,
        baseline=100.0,
        title="Resting heart rate above 100 bpm",
        detail="resting_heart_rate 118 bpm: above the limit of 100 bpm.",
    )


def test_to_alert_dedupe_keys_are_stable_and_unique_per_rule_user_metric_and_day() -> None:
    finding = tachycardia()
    assert to_alert(finding, 7).dedupe_key == to_alert(tachycardia(), 7).dedupe_key
    assert to_alert(finding, 7).dedupe_key == "rhr-high:7:resting_heart_rate:2024-03-06"
    others = {
        to_alert(finding, 8).dedupe_key,
        to_alert(tachycardia(day=date(2024, 3, 7)), 7).dedupe_key,
        to_alert(tachycardia(rule="rhr-sustained"), 7).dedupe_key,
        to_alert(dataclasses.replace(finding, metric="heart_rate"), 7).dedupe_key,
    }
    assert len(others) == 4 and to_alert(finding, 7).dedupe_key not in others


def test_to_alert_carries_value_threshold_day_and_rule_version() -> None:
    alert = to_alert(tachycardia(), 7)
    assert (alert.user_id, alert.category, alert.severity, alert.metric) == (
        7,
        "clinical",
        "warning",
        "resting_heart_rate",
    )
    assert (alert.observed_value, alert.threshold) == (118.0, 100.0)
    assert alert.recorded_at == datetime(2024, 3, 6, tzinfo=UTC)
    assert "rule rhr-high v1" in alert.body
    assert (alert.kind, alert.rule, alert.rule_version) == ("clinical", "rhr-high", 1)


def test_as_dict_is_the_json_shape() -> None:
    assert tachycardia().as_dict() == {
        "metric": "resting_heart_rate",
        "day": "2024-03-06",
        "kind": "clinical",
        "rule": "rhr-high",
        "severity": "warning",
        "value": 118.0,
        "baseline": 100.0,
    }


@pytest.mark.parametrize(("field", "value"), [("category", "cardiac"), ("severity", "high"), ("kind", "guess")])
def test_a_finding_refuses_values_outside_its_fixed_sets(field: str, value: str) -> None:
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(tachycardia(), **{field: value})
    assert CATEGORIES == ("clinical", "statistical", "glycemic", "sync", "device")


# --- evaluate: the sync's entry point ----------------------------------------------------------


def test_evaluate_flags_118_bpm_as_one_warning_per_day() -> None:
    readings = [
        reading("resting_heart_rate", 118, MORNING),
        reading("resting_heart_rate", 112, MORNING + timedelta(hours=2)),
        reading("resting_heart_rate", 64, MORNING - timedelta(days=1)),
    ]
    alerts = evaluate(7, readings)
    assert [(a.severity, a.metric, a.title, a.observed_value) for a in alerts] == [
        ("warning", "resting_heart_rate", "Resting heart rate above 100 bpm", 118.0)
    ]
    assert [a.dedupe_key for a in evaluate(7, readings)] == [a.dedupe_key for a in alerts]


def test_evaluate_judges_a_days_lowest_and_highest_meter_glucose() -> None:
    readings = [reading("glucose", 60, MORNING), reading("glucose", 260, MORNING + timedelta(hours=5))]
    assert sorted(a.dedupe_key.split(":")[0] for a in evaluate(7, readings)) == ["glucose-hyper-l2", "glucose-hypo-l1"]
    three = [reading("glucose", v, MORNING + timedelta(hours=4 * i)) for i, v in enumerate([95.0, 65.0, 120.0])]
    assert [a.rule for a in evaluate(7, three)] == ["glucose-hypo-l1"]


def test_evaluate_keeps_only_the_most_severe_level_of_a_ladder_per_day() -> None:
    readings = [reading("spo2", 91, MORNING), reading("spo2", 86, MORNING + timedelta(hours=1))]
    assert [(a.severity, a.observed_value) for a in evaluate(7, readings)] == [("critical", 86.0)]


def test_evaluate_leaves_a_cgm_trace_to_the_event_rules() -> None:
    # 5-minute CGM readings with one 10-minute dip: not a ≥ 15-minute event, and not a meter reading.
    trace = [reading("glucose", 110.0, MORNING + timedelta(minutes=5 * i)) for i in range(24)]
    trace[10] = reading("glucose", 50.0, trace[10].recorded_at)
    trace[11] = reading("glucose", 52.0, trace[11].recorded_at)
    assert evaluate(7, trace) == []


def test_evaluate_uses_the_patients_thresholds_and_local_day() -> None:
    late = datetime(2024, 3, 6, 23, 30, tzinfo=UTC)  # already 7 March in Auckland
    readings = [reading("resting_heart_rate", 118, late)]
    assert evaluate(7, readings, Thresholds.from_dict({"rhr_high": 120})) == []
    (alert,) = evaluate(7, readings, timezone="Pacific/Auckland")
    assert alert.dedupe_key == "rhr-high:7:resting_heart_rate:2024-03-07"


def test_clinical_rules_find_day_by_day_what_strongest_findings_finds() -> None:
    start = np.datetime64(DAY)
    days = start + np.arange(12)
    gaps = days[np.arange(12) % 4 != 1]  # a day missing every four
    highs: DailyData = {
        "weight": DailySeries(gaps, 78 + np.arange(gaps.size) * 0.5),
        "spo2": DailySeries(days, np.array([96, 91, 87, 95] * 3, dtype=float)),
        "blood_pressure_systolic": DailySeries(gaps, np.array([125, 142, 185, 120, 131, 150, 119, 182, 128], float)),
        "respiratory_rate": DailySeries(days[6:], np.array([14, 22, 26, 31, 13, 18], dtype=float)),
    }
    lows: DailyData = {metric: DailySeries(s.days, s.values - 3) for metric, s in highs.items()}
    first = start + 7
    judged = ClinicalRules(lows, highs, DEFAULT, first)
    for day in np.arange(first, start + 14):
        assert judged.findings(day) == strongest_findings(lows, highs, day, DEFAULT)
    assert [f.rule for day in np.arange(first, start + 14) for f in judged.findings(day)]
    with pytest.raises(ValueError, match="before the first day"):
        judged.findings(first - 1)


@pytest.mark.parametrize("name", ["findings", "thresholds", "clinical", "baseline"])
def test_each_analytics_module_exports_a_sorted_all_of_names_it_defines(name: str) -> None:
    module = importlib.import_module(f"pipeline.analytics.{name}")
    assert module.__all__ == sorted(module.__all__)
    assert all(hasattr(module, export) for export in module.__all__)
