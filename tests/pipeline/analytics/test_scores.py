"""Health scores: each §4.2 sub-formula at and around its anchors, the domains, and missing data."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest

from db.metrics import Reading
from pipeline.analytics import scores
from pipeline.analytics.scores import DOMAINS, SleepNight, compute_scores, sleep_score
from pipeline.analytics.series import DailyData, DailySeries

DAY = date(2026, 11, 21)


def on(day: date, value: float) -> DailySeries:
    return DailySeries.of({day.isoformat(): value})


def days_before(values: list[float], day: date = DAY, offset: int = 1) -> DailySeries:
    """``values[0]`` lands ``offset`` days before ``day``, the next one a day earlier, and so on."""
    return DailySeries.of({(day - timedelta(days=offset + i)).isoformat(): v for i, v in enumerate(values)})


def with_today(series: DailySeries, value: float, day: date = DAY) -> DailySeries:
    pairs = {str(d): float(v) for d, v in zip(series.days, series.values, strict=True)}
    return DailySeries.of(pairs | {day.isoformat(): value})


# --- Sleep sub-scores ---


@pytest.mark.parametrize(
    ("hours", "age", "points"),
    [
        (3.0, None, 0.0),
        (4.0, None, 0.0),
        (5.5, None, 50.0),
        (6.0, 40, 200 / 3),
        (7.0, 40, 100.0),
        (9.0, 40, 100.0),
        (9.5, 40, 95.0),
        (10.0, 40, 90.0),
        (13.0, 40, 60.0),
        (15.0, 40, 60.0),
        (9.0, 64, 100.0),
        (8.0, 65, 100.0),
        (8.5, 65, 95.0),
        (9.0, 65, 90.0),
        (10.0, 80, 80.0),
        (7.0, 80, 100.0),
    ],
)
def test_duration_is_full_inside_the_age_band_and_linear_outside(hours: float, age: int | None, points: float) -> None:
    assert scores.duration_points(hours * 60, age) == pytest.approx(points)


@pytest.mark.parametrize(("percent", "points"), [(60, 0), (65, 0), (77.5, 50), (90, 100), (98, 100)])
def test_efficiency_runs_from_0_at_65_percent_to_100_at_90(percent: float, points: float) -> None:
    assert scores.efficiency_points(percent) == pytest.approx(points)


@pytest.mark.parametrize(("minutes", "points"), [(5, 100), (20, 100), (21, 97.5), (40, 50), (60, 0), (90, 0)])
def test_latency_is_full_up_to_20_minutes_and_0_from_60(minutes: float, points: float) -> None:
    assert scores.latency_points(minutes) == pytest.approx(points)


@pytest.mark.parametrize(("minutes", "points"), [(0, 100), (20, 100), (27, 90), (55, 50), (90, 0), (120, 0)])
def test_waso_is_full_up_to_20_minutes_and_0_from_90(minutes: float, points: float) -> None:
    assert scores.waso_points(minutes) == pytest.approx(points)


@pytest.mark.parametrize(
    ("percent", "low", "high", "points"),
    [
        (18, 18, 27, 100),
        (27, 18, 27, 100),
        (17, 18, 27, 95),
        (28, 18, 27, 95),
        (10, 18, 27, 60),
        (50, 18, 27, 0),
        (13, 13, 23, 100),
        (12, 13, 23, 95),
        (24.5, 13, 23, 92.5),
        (0, 13, 23, 35),
    ],
)
def test_a_stage_band_loses_5_points_per_percentage_point_outside(
    percent: float, low: float, high: float, points: float
) -> None:
    assert scores.band_points(percent, low, high) == pytest.approx(points)


def test_a_perfect_night_scores_100() -> None:
    night = SleepNight(480, efficiency=90, latency_min=20, waso_min=20, rem_min=96, deep_min=72)
    assert sleep_score(night).value == pytest.approx(100)


def test_the_worked_sleep_example_of_the_docs() -> None:
    night = SleepNight(390, efficiency=85, latency_min=30, waso_min=41, rem_min=65, deep_min=70)
    composite = sleep_score(night, age=40)
    parts = composite.contributors
    assert composite.value == pytest.approx(0.4 * 250 / 3 + 0.2 * 80 + 0.1 * 75 + 0.15 * 70 + 0.15 * 290 / 3)
    assert [parts[p]["score"] for p in ("duration", "efficiency", "latency", "waso", "stages")] == [
        83.3,
        80.0,
        75.0,
        70.0,
        96.7,
    ]
    assert parts["stages"]["rem"]["percent"] == 16.7 and parts["stages"]["rem"]["score"] == 93.3
    assert parts["partial"] is False


def test_missing_sleep_parts_are_renormalised_and_listed_with_weight_0() -> None:
    composite = sleep_score(SleepNight(480, efficiency=77.5))
    parts = composite.contributors
    assert composite.value == pytest.approx((0.4 * 100 + 0.2 * 50) / 0.6)
    assert parts["duration"]["weight"] == pytest.approx(0.6667) and parts["efficiency"]["weight"] == 0.3333
    for missing in ("latency", "waso", "stages"):
        assert parts[missing]["weight"] == 0 and parts[missing]["score"] is None
    assert parts["latency"]["nominal_weight"] == 0.1 and parts["partial"] is True


def test_one_known_stage_stands_for_the_stage_part() -> None:
    parts = sleep_score(SleepNight(400, rem_min=60)).contributors  # REM 15 % → 85
    assert parts["stages"]["score"] == 85.0 and parts["stages"]["partial"] is True
    assert parts["stages"]["deep"]["weight"] == 0


def test_a_night_with_a_negative_number_is_refused() -> None:
    with pytest.raises(ValueError, match="waso_min"):
        SleepNight(400, waso_min=-5)


# --- Activity ---


@pytest.mark.parametrize(
    ("steps", "age", "points"),
    [(8000, 40, 100), (4000, 40, 50), (12000, 40, 100), (7000, 59, 87.5), (7000, 60, 100), (3500, 70, 50)],
)
def test_steps_reach_100_at_8000_under_60_and_7000_from_60(steps: float, age: int, points: float) -> None:
    assert scores.steps_points(steps, age) == pytest.approx(points)


def test_an_unknown_age_uses_the_8000_step_target() -> None:
    assert scores.steps_points(7000, None) == pytest.approx(87.5)


@pytest.mark.parametrize(("minutes", "points"), [(0, 0), (75, 50), (150, 100), (300, 100)])
def test_mvpa_reaches_100_at_150_weekly_minutes(minutes: float, points: float) -> None:
    assert scores.mvpa_points(minutes) == pytest.approx(points)


def test_weekly_mvpa_counts_vigorous_minutes_twice_over_the_trailing_7_days() -> None:
    moderate = days_before([20.0] * 7, offset=0)
    vigorous = DailySeries.of({DAY.isoformat(): 5.0, (DAY - timedelta(days=7)).isoformat(): 100.0})
    assert scores.weekly_mvpa(DAY, moderate, vigorous) == 150.0


def test_a_week_with_a_day_of_neither_minutes_has_no_mvpa() -> None:
    moderate = days_before([20.0] * 6, offset=0)
    assert scores.weekly_mvpa(DAY, moderate, None) is None
    assert scores.weekly_mvpa(DAY, moderate, days_before([10.0], offset=6)) == 140.0


def test_activity_is_half_steps_half_mvpa() -> None:
    found = compute_scores({"steps": on(DAY, 6000)}, DAY, age=40, moderate_minutes=days_before([75 / 7] * 7, offset=0))
    assert found["activity"].value == 62.5
    assert found["activity"].contributors["mvpa"]["input"] == pytest.approx(75)


def test_activity_from_steps_alone_is_flagged_partial() -> None:
    activity = compute_scores({"steps": on(DAY, 6000)}, DAY, age=40)["activity"]
    assert activity.value == 75.0
    assert activity.contributors["partial"] is True
    assert activity.contributors["steps"] == {
        "input": 6000.0,
        "unit": "count",
        "target": 8000,
        "score": 75.0,
        "weight": 1.0,
        "nominal_weight": 0.5,
    }
    assert activity.contributors["mvpa"]["weight"] == 0


# --- Cardio ---


@pytest.mark.parametrize(("bpm", "points"), [(50, 100), (60, 100), (80, 50), (90, 25), (100, 0), (110, 0)])
def test_resting_heart_rate_runs_from_100_at_60_bpm_to_0_at_100(bpm: float, points: float) -> None:
    assert scores.rhr_points(bpm) == pytest.approx(points)


@pytest.mark.parametrize(
    ("systolic", "diastolic", "category"),
    [
        (115, 75, "normal"),
        (119, 79, "normal"),
        (120, 79, "elevated"),
        (129, 79, "elevated"),
        (130, 70, "stage_1"),
        (118, 80, "stage_1"),
        (139, 89, "stage_1"),
        (140, 70, "stage_2"),
        (110, 90, "stage_2"),
        (180, 120, "stage_2"),
        (181, 80, "crisis"),
        (150, 121, "crisis"),
    ],
)
def test_blood_pressure_categories_follow_acc_aha(systolic: float, diastolic: float, category: str) -> None:
    assert scores.bp_category_of(systolic, diastolic) == category


@pytest.mark.parametrize(
    ("systolic", "diastolic", "category"),
    [(125, 85, "stage_1"), (145, 70, "stage_2"), (135, 95, "stage_2"), (122, 125, "crisis"), (190, 60, "crisis")],
)
def test_the_higher_of_the_two_blood_pressure_categories_wins(systolic: float, diastolic: float, category: str) -> None:
    assert scores.bp_category_of(systolic, diastolic) == category


@pytest.mark.parametrize(
    ("category", "points"), [("normal", 100), ("elevated", 80), ("stage_1", 60), ("stage_2", 30), ("crisis", 0)]
)
def test_each_blood_pressure_category_has_its_points(category: str, points: float) -> None:
    cardio = compute_scores({}, DAY, bp_category=category)["cardio"]
    assert cardio.value == points
    assert cardio.contributors["bp"]["source"] == "given" and cardio.contributors["partial"] is True


def test_cardio_is_the_mean_of_resting_heart_rate_and_blood_pressure() -> None:
    daily = {
        "resting_heart_rate": on(DAY, 80),
        "blood_pressure_systolic": on(DAY, 135),
        "blood_pressure_diastolic": on(DAY, 78),
    }
    cardio = compute_scores(daily, DAY, bp_category="normal")["cardio"]
    assert cardio.value == 55.0  # (50 + 60)/2: the day's readings (stage 1) win over the given category
    assert cardio.contributors["bp"]["category"] == "stage_1" and cardio.contributors["bp"]["source"] == "readings"
    assert cardio.contributors["rhr"]["weight"] == 0.5 and cardio.contributors["partial"] is False


def test_one_blood_pressure_number_alone_gives_no_category() -> None:
    cardio = compute_scores({"resting_heart_rate": on(DAY, 60), "blood_pressure_systolic": on(DAY, 200)}, DAY)
    assert cardio["cardio"].value == 100.0
    assert cardio["cardio"].contributors["bp"]["weight"] == 0


def test_an_unknown_blood_pressure_category_is_refused() -> None:
    with pytest.raises(ValueError, match="stage_1"):
        compute_scores({}, DAY, bp_category="Stage 1")


# --- Recovery ---


def recovery_data(days: int = 30, hrv: float = 45, rhr: float = 60, sleep: bool = True) -> dict[str, DailySeries]:
    """A baseline of ``days`` days before DAY (HRV cycling 40/45/50 ms, RHR 58/60/62 bpm, the same
    night every night), plus DAY itself with the given HRV and RHR."""
    data = {
        "hrv_rmssd": with_today(days_before([(40.0, 45.0, 50.0)[i % 3] for i in range(days)]), hrv),
        "resting_heart_rate": with_today(days_before([(58.0, 60.0, 62.0)[i % 3] for i in range(days)]), rhr),
    }
    if sleep:
        data["sleep_duration"] = with_today(days_before([450.0] * days), 450)
        data["sleep_efficiency"] = with_today(days_before([88.0] * days), 88)
    return data


def test_recovery_at_the_personal_baseline_is_exactly_50() -> None:
    recovery = compute_scores(recovery_data(), DAY)["recovery"]
    assert recovery.value == 50.0
    assert recovery.contributors["band"] == "yellow" and recovery.contributors["partial"] is False
    assert [recovery.contributors[p]["z"] for p in ("hrv", "rhr", "sleep")] == [0, 0, 0]


def test_recovery_follows_the_reference_formula() -> None:
    recovery = compute_scores(recovery_data(hrv=50), DAY)["recovery"]
    # ln 50 is one MAD above the median ln 45, so z_hrv = 1/1.4826; C = 0.5·z_hrv.
    z_hrv = 1 / 1.4826
    expected = 100 * 0.5 * (1 + math.erf(0.5 * z_hrv / 0.6164 / math.sqrt(2)))
    assert recovery.value == round(expected, 1) == 70.8
    assert recovery.contributors["hrv"]["z"] == pytest.approx(z_hrv, abs=1e-3)
    assert recovery.contributors["divisor"] == 0.6164 and recovery.contributors["band"] == "green"


def test_recovery_rises_with_hrv_and_falls_with_resting_heart_rate() -> None:
    by_hrv = [compute_scores(recovery_data(hrv=h), DAY)["recovery"].value for h in (25, 35, 45, 55, 70)]
    assert by_hrv == sorted(by_hrv) and len(set(by_hrv)) == 5
    by_rhr = [compute_scores(recovery_data(rhr=r), DAY)["recovery"].value for r in (55, 60, 65, 70)]
    assert by_rhr == sorted(by_rhr, key=lambda v: -(v or 0)) and len(set(by_rhr)) == 4
    assert by_rhr[-1] is not None and by_rhr[-1] <= 33
    assert compute_scores(recovery_data(rhr=70), DAY)["recovery"].contributors["band"] == "red"


def test_a_baseline_without_spread_uses_the_1_bpm_floor() -> None:
    data = recovery_data() | {"resting_heart_rate": with_today(days_before([60.0] * 30), 62)}
    recovery = compute_scores(data, DAY)["recovery"]
    assert recovery.contributors["rhr"]["z"] == 2.0 and recovery.contributors["rhr"]["baseline_scale"] == 1.0
    assert recovery.value == round(100 * 0.5 * (1 + math.erf(-0.6 / 0.6164 / math.sqrt(2))), 1)


def test_recovery_without_sleep_leaves_it_out_of_the_divisor() -> None:
    recovery = compute_scores(recovery_data(hrv=50, sleep=False), DAY)["recovery"]
    assert recovery.contributors["divisor"] == 0.5831 and recovery.contributors["partial"] is True
    assert recovery.contributors["sleep"]["weight"] == 0
    assert recovery.value == round(100 * 0.5 * (1 + math.erf(0.5 / 1.4826 / 0.5831 / math.sqrt(2))), 1)


def test_recovery_needs_28_baseline_days() -> None:
    assert compute_scores(recovery_data(days=28), DAY)["recovery"].value == 50.0
    short = compute_scores(recovery_data(days=27), DAY)["recovery"]
    assert short.value is None and short.contributors == {}
    assert short.reason == (
        "needs 28 baseline days of hrv_rmssd and resting_heart_rate in the 60 days before 2026-11-21"
        " (has hrv_rmssd 27, resting_heart_rate 27)"
    )


def test_the_baseline_ignores_days_more_than_60_days_back() -> None:
    old = {
        metric: with_today(days_before([50.0] * 30, offset=61), 50) for metric in ("hrv_rmssd", "resting_heart_rate")
    }
    recovery = compute_scores(old, DAY)["recovery"]
    assert recovery.value is None and recovery.reason and "(has hrv_rmssd 0, resting_heart_rate 0)" in recovery.reason


def test_recovery_needs_todays_hrv_and_resting_heart_rate() -> None:
    data = recovery_data()
    data["hrv_rmssd"] = data["hrv_rmssd"].before(np.datetime64(DAY, "D"))
    assert compute_scores(data, DAY)["recovery"].reason == "needs hrv_rmssd on 2026-11-21"


# --- Glycemic and overall ---


@pytest.mark.parametrize(("gri", "value"), [(0, 100), (12.5, 87.5), (100, 0), (130, 0)])
def test_glycemic_is_100_minus_the_capped_gri(gri: float, value: float) -> None:
    assert compute_scores({}, DAY, gri=gri)["glycemic"].value == value


def test_a_negative_gri_is_refused() -> None:
    with pytest.raises(ValueError, match="gri"):
        compute_scores({}, DAY, gri=-1)


def test_overall_is_the_equal_mean_of_three_or_more_domains() -> None:
    found = compute_scores({"steps": on(DAY, 6000), "resting_heart_rate": on(DAY, 80)}, DAY, age=40, gri=20)
    overall = found["overall"]
    assert overall.value == round((75 + 50 + 80) / 3, 1)
    assert overall.contributors["cardio"]["weight"] == pytest.approx(0.3333)
    assert overall.contributors["sleep"] == {
        "reason": "needs sleep_duration on 2026-11-21",
        "score": None,
        "weight": 0.0,
        "nominal_weight": 0.2,
    }


def test_overall_needs_three_domains() -> None:
    overall = compute_scores({"steps": on(DAY, 6000)}, DAY, gri=20)["overall"]
    assert overall.value is None
    assert overall.reason == "needs 3 domains with values on 2026-11-21 (has 2: activity, glycemic)"


def test_no_data_gives_every_domain_a_reason_and_no_number() -> None:
    found = compute_scores({}, DAY)
    assert list(found) == list(DOMAINS)
    for domain, score in found.items():
        assert (score.domain, score.day, score.value, score.contributors) == (domain, DAY, None, {})
        assert score.reason and score.reason.startswith("needs ")
    assert found["sleep"].reason == "needs sleep_duration on 2026-11-21"


def test_contributors_are_json_ready() -> None:
    data: DailyData = recovery_data() | {"steps": on(DAY, 9000), "sleep_rem": on(DAY, 90)}
    found = compute_scores(data, DAY, gri=10, bp_category="elevated")
    assert all(score.value is not None for score in found.values())
    assert json.loads(json.dumps({d: s.contributors for d, s in found.items()}))["overall"]["partial"] is False


# --- The readings adapter used by analyse_run ---


def reading(metric: str, at: str, value: float) -> Reading:
    return Reading(metric, datetime.fromisoformat(at).replace(tzinfo=UTC), value, "bpm")


def test_cardio_from_readings_scores_the_latest_local_day() -> None:
    readings = [
        reading("resting_heart_rate", "2026-11-20T07:00", 60),
        reading("resting_heart_rate", "2026-11-21T07:00", 118),
        reading("heart_rate", "2026-11-22T07:00", 70),
    ]
    score = scores.cardio(readings, "UTC")
    assert score is not None and (score.day, score.value) == (date(2026, 11, 21), 0.0)


def test_cardio_from_readings_uses_the_users_time_zone_and_blood_pressure() -> None:
    readings = [
        reading("blood_pressure_systolic", "2026-11-21T02:00", 125),
        reading("blood_pressure_diastolic", "2026-11-21T02:00", 75),
    ]
    score = scores.cardio(readings, "America/New_York")
    assert score is not None and (score.day, score.value) == (date(2026, 11, 20), 80.0)
    assert score.contributors["bp"]["category"] == "elevated"


def test_cardio_from_readings_without_cardio_metrics_is_none() -> None:
    assert scores.cardio([reading("heart_rate", "2026-11-21T07:00", 70)], "UTC") is None


# --- Many nights at once: the arrays give the scalar definition's floats ---

ANCHORS: dict[str, list[float]] = {
    "duration": [0, 240, 420, 480, 540, 600, 780, 900],
    "efficiency": [0, 65, 77.5, 90, 100],
    "latency": [0, 20, 40, 60, 90],
    "waso": [0, 20, 55, 90, 120],
    "rem": [0, 65, 90, 150],
    "deep": [0, 50, 70, 120],
}
HIGH = {"duration": 900, "efficiency": 100, "latency": 90, "waso": 120, "rem": 200, "deep": 200}


def random_nights(rng: np.random.Generator, count: int) -> dict[str, np.ndarray]:
    """Each part uniform, or on one of its formula's anchors, or missing (NaN; never the duration)."""
    nights = {}
    for part, anchors in ANCHORS.items():
        values = np.where(rng.random(count) < 0.3, rng.choice(anchors, count), rng.uniform(0, HIGH[part], count))
        values = np.round(values, int(rng.integers(0, 3)))
        if part != "duration":
            values[rng.random(count) < 0.3] = np.nan
        nights[part] = values
    return nights


def scalar_scores(nights: dict[str, np.ndarray], age: int | None) -> list[float]:
    def part(name: str, i: int) -> float | None:
        value = float(nights[name][i])
        return None if math.isnan(value) else value

    parts = ("efficiency", "latency", "waso", "rem", "deep")
    return [
        sleep_score(SleepNight(float(nights["duration"][i]), *(part(p, i) for p in parts)), age).value
        for i in range(len(nights["duration"]))
    ]


@pytest.mark.parametrize("age", [None, 30, 64, 65, 80])
def test_sleep_scores_on_arrays_equal_sleep_score_night_by_night(age: int | None) -> None:
    rng = np.random.default_rng(age or 1)
    for _ in range(20):
        nights = random_nights(rng, 500)
        duration, efficiency, latency, waso, rem, deep = (nights[part] for part in ANCHORS)
        arrays = scores.sleep_scores(duration, efficiency, latency, waso, rem, deep, age)
        assert arrays.tolist() == scalar_scores(nights, age)  # equal floats, not approximately


def test_sleep_scores_refuse_what_a_night_refuses() -> None:
    ok, missing = np.array([420.0]), np.array([np.nan])
    with pytest.raises(ValueError, match="rem_min must be a finite number"):
        scores.sleep_scores(ok, missing, missing, missing, np.array([-1.0]), missing)
    with pytest.raises(ValueError, match="duration_min must be a finite number"):
        scores.sleep_scores(missing, missing, missing, missing, missing, missing)


def nightly_data(rng: np.random.Generator, days: int = 90) -> DailyData:
    """The sleep metrics on random days of the ``days`` before DAY, each with its own gaps."""
    nights = random_nights(rng, days)
    metrics = {
        "sleep_duration": "duration",
        "sleep_efficiency": "efficiency",
        "sleep_latency": "latency",
        "sleep_waso": "waso",
        "sleep_rem": "rem",
        "sleep_deep": "deep",
    }
    dates = [DAY - timedelta(days=days - i) for i in range(days)]
    data: dict[str, DailySeries] = {}
    for metric, part in metrics.items():
        keep = ~np.isnan(nights[part]) & (rng.random(days) < 0.9)
        pairs = zip(dates, nights[part], keep, strict=True)
        data[metric] = DailySeries.of({d.isoformat(): float(v) for d, v, k in pairs if k})
    return data


def test_nightly_scores_equal_one_sleep_score_per_night_with_a_duration() -> None:
    rng = np.random.default_rng(7)
    for age in (None, 70):
        for _ in range(50):
            data = nightly_data(rng)
            days = np.arange(np.datetime64(DAY - timedelta(days=95)), np.datetime64(DAY))
            nights = [scores.sleep._night(data, d) for d in days.tolist()]
            expected = [sleep_score(n, age).value for n in nights if n is not None]
            assert scores.nightly_scores(data, days, age).tolist() == expected


def test_nightly_scores_refuse_a_bad_night_as_the_scalar_path_does() -> None:
    data = dict(nightly_data(np.random.default_rng(3)))
    duration = data["sleep_duration"]
    data["sleep_rem"] = DailySeries(duration.days, np.where(np.arange(len(duration)) == 5, -3.0, 60.0))
    with pytest.raises(ValueError, match="rem_min must be a finite number"):
        scores.nightly_scores(data, duration.days)


def test_a_baseline_window_scores_the_nights_nightly_scores_does() -> None:
    rng = np.random.default_rng(11)
    first = (DAY - date(1970, 1, 1)).days - 60
    days = np.arange(np.datetime64(DAY - timedelta(days=60)), np.datetime64(DAY))
    for age in (None, 70):
        for _ in range(50):
            data = nightly_data(rng)
            expected = scores.nightly_scores(data, days, age).tolist()
            assert scores.sleep._window_scores(data, first, first + 60, age).tolist() == expected
    data = dict(nightly_data(rng))
    duration = data["sleep_duration"]
    data["sleep_deep"] = DailySeries(duration.days, np.where(np.arange(len(duration)) == len(duration) - 5, -3.0, 60.0))
    with pytest.raises(ValueError, match="deep_min must be a finite number"):
        scores.sleep._window_scores(data, first, first + 60, None)


# --- Scoring a batch of users ---


SLEEP_METRICS = ("sleep_duration", "sleep_efficiency", "sleep_latency", "sleep_waso", "sleep_rem", "sleep_deep")
BP_METRICS = ("blood_pressure_systolic", "blood_pressure_diastolic")


def random_user(rng: np.random.Generator, day: date, metrics: tuple[str, ...], days: int) -> dict[str, DailySeries]:
    """``days`` days up to ``day`` of each metric at its usual level, about one day in six missing."""
    levels = {
        "sleep_duration": (445, 60), "sleep_efficiency": (86, 6), "sleep_latency": (20, 12), "sleep_waso": (35, 20),
        "sleep_rem": (95, 25), "sleep_deep": (80, 20), "hrv_rmssd": (45, 10), "resting_heart_rate": (62, 4),
        "steps": (8000, 3000), "blood_pressure_systolic": (125, 15), "blood_pressure_diastolic": (80, 10),
    }  # fmt: skip
    data = {}
    for metric in metrics:
        mean, spread = levels[metric]
        kept = [i for i in range(days) if i == 0 or rng.random() > 1 / 6]
        values = np.maximum(0.0, rng.normal(mean, spread, len(kept)).round(1))
        data[metric] = DailySeries.of(
            {(day - timedelta(days=i)).isoformat(): float(v) for i, v in zip(kept, values, strict=True)}
        )
    return data


def mixed_batch() -> list[scores.ScoreInput]:
    rng = np.random.default_rng(42)
    every = (*SLEEP_METRICS, "hrv_rmssd", "resting_heart_rate", "steps", *BP_METRICS)
    batch = [
        scores.ScoreInput(recovery_data(), DAY, 40, 12.5),  # everything at the baseline, with CGM
        scores.ScoreInput(recovery_data(days=20), DAY),  # too short a baseline
        scores.ScoreInput(recovery_data(sleep=False), DAY, 70),  # recovery without sleep
        scores.ScoreInput({}, DAY),  # no data: every domain has a reason
        scores.ScoreInput({"steps": on(DAY, 9000.0)}, DAY, 65, None, bp_category="stage_1"),
        scores.ScoreInput({"sleep_duration": on(DAY, 0.0), "sleep_rem": on(DAY, 0.0)}, DAY),  # no stage percent
    ]
    for i in range(24):
        metrics = tuple(m for m in every if rng.random() < 0.8)
        day = DAY - timedelta(days=int(rng.integers(0, 40)))  # each user's own day and window
        age = [None, 30, 64, 65, 80][i % 5]
        gri = None if i % 3 else float(rng.uniform(0, 120))
        batch.append(scores.ScoreInput(random_user(rng, day, metrics, int(rng.integers(10, 100))), day, age, gri))
    return batch


def test_a_batch_scores_each_user_as_the_domains_score_that_user_alone() -> None:
    batch = mixed_batch()
    found = scores.compute_scores_many(batch)
    assert len(found) == len(batch)
    for user, got in zip(batch, found, strict=True):
        daily, day, age = user.daily, user.day, user.age
        alone = {
            "sleep": scores.score_sleep(daily, day, age),
            "activity": scores.score_activity(daily, day, age, user.moderate_minutes, user.vigorous_minutes),
            "cardio": scores.score_cardio(daily, day, user.bp_category),
            "recovery": scores.score_recovery(daily, day, age),
            "glycemic": scores.score_glycemic(day, user.gri),
        }
        assert got == alone | {"overall": scores.score_overall(day, alone)}
        assert got == compute_scores(daily, day, age=age, gri=user.gri, bp_category=user.bp_category)
    values = {domain: [s[domain].value is not None for s in found] for domain in DOMAINS}
    # The batch holds users with and without a value in every domain, and recoveries with and without sleep.
    assert all(any(have) and not all(have) for have in values.values())
    recoveries = [s["recovery"].contributors for s in found if s["recovery"].value is not None]
    assert {r["partial"] for r in recoveries} == {True, False}


def test_a_batch_refuses_a_bad_night_as_one_user_does() -> None:
    bad = recovery_data()
    bad["sleep_efficiency"] = with_today(days_before([88.0] * 29 + [-3.0]), 88)
    with pytest.raises(ValueError, match="efficiency must be a finite number ≥ 0"):
        compute_scores(bad, DAY)
    with pytest.raises(ValueError, match="efficiency must be a finite number ≥ 0"):
        scores.compute_scores_many([scores.ScoreInput(recovery_data(), DAY), scores.ScoreInput(bad, DAY)])
