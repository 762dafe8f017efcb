"""Personal-baseline detectors (reference: health-analytics §3 and §7 V13–V15)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest

from pipeline.analytics.baseline import (
    Z_LIMIT,
    BaselineRules,
    _robust,
    _surely_within,
    baseline_findings,
    ewma,
    modified_z,
    robust_baseline,
)
from pipeline.analytics.findings import Finding, to_alert
from pipeline.analytics.series import DailyData, DailySeries

TODAY = np.datetime64("2024-03-29")
DAY = np.timedelta64(1, "D")
# §7 V14: a resting-HR baseline with median 59 and MAD 1.
RHR = [58, 59, 57, 60, 58, 61, 59, 58, 60, 57, 59, 58, 60, 59]
HRV = [42, 44, 45, 46, 48, 43, 45, 47, 44, 46, 45, 43, 47, 46]


def series(history: Sequence[float | None], today: float | None = None, end: np.datetime64 = TODAY) -> DailySeries:
    """``history`` on consecutive days ending the day before ``end`` (None: no reading), then ``today``."""
    values = [*history, today]
    days = end - np.arange(len(values))[::-1] * DAY
    keep = np.array([v is not None for v in values])
    return DailySeries(days[keep], np.array([v for v in values if v is not None], dtype=float))


def found(
    daily: DailyData, day: np.datetime64 = TODAY, flagged: dict[str, set[np.datetime64]] | None = None
) -> list[str]:
    return [f"{f.rule}:{f.metric}" for f in baseline_findings(daily, day, flagged)]


# --- the reference vectors ---------------------------------------------------------------------


def test_v13_modified_z_of_the_toy_series() -> None:
    m = modified_z([10, 11, 12, 12, 13, 14, 40])
    assert m == pytest.approx([-1.349, -0.6745, 0, 0, 0.6745, 1.349, 18.886], abs=1e-3)
    assert np.flatnonzero(np.abs(m) > 3.5).tolist() == [6]


def test_v14_a_resting_hr_of_68_against_the_baseline_is_m_6_07() -> None:
    assert modified_z([68], RHR)[0] == pytest.approx(6.0705, abs=1e-4)
    (finding,) = baseline_findings({"resting_heart_rate": series(RHR, 68)}, TODAY)
    assert (finding.rule, finding.severity, finding.kind, finding.category) == (
        "modified-z",
        "info",
        "statistical",
        "statistical",
    )
    assert (finding.value, finding.baseline) == (68.0, 59.0)
    assert "modified z 6.07" in finding.detail


def test_v14_night_signal_alerts_when_the_next_night_is_also_elevated() -> None:
    assert found({"resting_heart_rate": series(RHR, 68)}) == ["modified-z:resting_heart_rate"]
    (shift,) = [
        f for f in baseline_findings({"resting_heart_rate": series([*RHR, 68], 68)}, TODAY) if f.rule == "rhr-sustained"
    ]
    assert (shift.severity, shift.value, shift.baseline) == ("warning", 68.0, 59.0)


def test_v15_ewma_first_signals_at_t_8_which_is_index_7() -> None:
    z, ucl, first = ewma([60, 61, 59, 60, 62, 60, 61, 66, 67, 68], lam=0.2, L=3, mu0=60, sigma=1)
    assert z == pytest.approx([60, 60.2, 59.96, 59.968, 60.3744, 60.2995, 60.4396, 61.5517, 62.6414, 63.7131], abs=1e-4)
    assert ucl[:8] == pytest.approx([60.6, 60.768, 60.859, 60.912, 60.945, 60.965, 60.978, 60.986], abs=1e-3)
    assert first == 7


def test_ewma_without_a_shift_never_signals() -> None:
    assert ewma([60, 61, 59, 60, 60, 61, 59], lam=0.2, L=3, mu0=60, sigma=1)[2] is None


@pytest.mark.parametrize(("lam", "sigma"), [(0.0, 1.0), (1.5, 1.0), (0.2, 0.0)])
def test_ewma_refuses_parameters_outside_the_chart(lam: float, sigma: float) -> None:
    with pytest.raises(ValueError, match="0 < lam <= 1"):
        ewma([60.0], lam=lam, L=3, mu0=60, sigma=sigma)


# --- the baseline: length, window, flagged days, zero MAD --------------------------------------


def test_thirteen_valid_days_are_not_enough_and_fourteen_are() -> None:
    assert found({"resting_heart_rate": series(RHR[1:], 68)}) == []
    assert found({"resting_heart_rate": series(RHR, 68)}) == ["modified-z:resting_heart_rate"]


def test_missing_days_do_not_count_as_valid() -> None:
    assert found({"resting_heart_rate": series([*RHR[:7], None, *RHR[7:13]], 68)}) == []


def test_days_older_than_28_days_are_not_in_the_baseline() -> None:
    assert found({"resting_heart_rate": series([*RHR, *[None] * 14], 68)}) == ["modified-z:resting_heart_rate"]
    assert found({"resting_heart_rate": series([*RHR, *[None] * 15], 68)}) == []


def test_flagged_days_are_left_out_of_the_baseline() -> None:
    rhr = {"resting_heart_rate": series([*RHR, *[66] * 6], 66)}
    flagged = {"resting_heart_rate": {TODAY - k * DAY for k in range(1, 7)}}
    # Six unflagged days at 66 pull the median to 59.5 and the MAD to 1.5: M = 2.92, no alert.
    assert "modified-z:resting_heart_rate" not in found(rhr)
    (z,) = [f for f in baseline_findings(rhr, TODAY, flagged) if f.rule == "modified-z"]
    assert z.baseline == 59.0 and "over 14 days" in z.detail


def test_flagging_a_day_can_leave_too_few_for_a_baseline() -> None:
    flagged = {"resting_heart_rate": {TODAY - 3 * DAY}}
    assert found({"resting_heart_rate": series(RHR, 68)}, flagged=flagged) == []
    # Flags are per metric: another metric's flagged days leave this baseline alone.
    assert found({"resting_heart_rate": series(RHR, 68)}, flagged={"spo2": {TODAY - 3 * DAY}}) != []


def test_a_zero_mad_falls_back_to_the_mean_absolute_deviation() -> None:
    history = [60.0] * 12 + [59.0, 61.0]
    base = robust_baseline(history)
    assert (base.median, base.fallback) == (60.0, True)
    assert base.scale == pytest.approx(1.253314 * 2 / 14)
    (finding,) = baseline_findings({"resting_heart_rate": series(history, 61)}, TODAY)
    assert "modified z 5.59" in finding.detail and "MAD was 0" in finding.detail


def test_a_constant_baseline_gives_no_statistical_alert_at_all() -> None:
    assert np.isnan(modified_z([80.0], [60.0] * 14)[0])
    assert found({"resting_heart_rate": series([60.0] * 14, 80)}) == []


def test_a_baseline_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="finite"):
        robust_baseline([np.nan])


def test_no_value_on_the_day_means_no_finding() -> None:
    assert found({"resting_heart_rate": series(RHR)}) == []


# --- direction ---------------------------------------------------------------------------------


def test_only_the_direction_that_matters_fires() -> None:
    assert found({"resting_heart_rate": series(RHR, 45)}) == []  # RHR down
    assert found({"hrv_rmssd": series(HRV, 90)}) == []  # HRV up
    assert found({"hrv_rmssd": series(HRV, 20)}) == ["modified-z:hrv_rmssd"]
    assert found({"spo2": series([97, 96, 97, 98] * 4, 93)}) == ["modified-z:spo2"]
    assert found({"respiratory_rate": series([14.0, 14.5, 15.0, 14.5] * 4, 19)}) == ["modified-z:respiratory_rate"]
    assert found({"respiratory_rate": series([14.0, 14.5, 15.0, 14.5] * 4, 10)}) == []


def test_hrv_is_judged_on_ln_rmssd_and_reported_in_ms() -> None:
    (finding,) = baseline_findings({"hrv_rmssd": series(HRV, 20)}, TODAY)
    assert finding.baseline == pytest.approx(45.0) and finding.value == 20.0
    assert "ln(RMSSD)" in finding.detail
    # 40 ms: M = −3.37 on the raw scale, but −3.54 on the ln scale, which is the one judged.
    assert modified_z([40], HRV)[0] == pytest.approx(-3.3725)
    assert found({"hrv_rmssd": series(HRV, 40)}) == ["modified-z:hrv_rmssd"]


def test_a_skin_temperature_rise_of_two_degrees_is_a_statistical_finding_not_a_fever() -> None:
    skin = [0.1, -0.1, 0.0, 0.2, -0.2, 0.1, 0.0, -0.1, 0.1, 0.0, 0.2, -0.1, 0.0, 0.1]
    (finding,) = baseline_findings({"skin_temp_deviation": series(skin, 2.0)}, TODAY)
    assert (finding.rule, finding.kind, finding.category) == ("modified-z", "statistical", "statistical")


# --- steps: the same weekday only --------------------------------------------------------------

SUNDAY = np.datetime64("2024-03-31")


def weekly_steps(weeks: int, end: np.datetime64) -> list[float]:
    """``weeks`` weeks of steps before ``end``: quiet Sundays (~3,000), busy other days (~10,000)."""
    days = end - np.arange(weeks * 7, 0, -1) * DAY
    sundays = (days.astype("datetime64[D]").view("int64") - 3) % 7 == 0  # 1970-01-04 was a Sunday
    return [3000.0 + 100 * (i % 4) if sun else 10000.0 + 200 * (i % 5) for i, sun in enumerate(sundays)]


def test_steps_are_compared_with_the_same_weekday_only() -> None:
    assert found({"steps": series(weekly_steps(8, SUNDAY), 3000, end=SUNDAY)}, day=SUNDAY) == []
    monday = SUNDAY + DAY
    assert found({"steps": series(weekly_steps(8, monday), 3000, end=monday)}, day=monday) == ["modified-z:steps"]
    # A busy Sunday is not a finding: fewer steps is the direction that matters.
    assert found({"steps": series(weekly_steps(8, SUNDAY), 12000, end=SUNDAY)}, day=SUNDAY) == []


def test_steps_need_four_of_the_same_weekday() -> None:
    monday = SUNDAY + DAY
    four = weekly_steps(4, monday)
    assert found({"steps": series(four, 3000, end=monday)}, day=monday) == ["modified-z:steps"]
    three = [None if i == 0 else v for i, v in enumerate(four)]  # the first of the four Mondays is missing
    assert found({"steps": series(three, 3000, end=monday)}, day=monday) == []


# --- sustained shift and escalation -------------------------------------------------------------


@pytest.mark.parametrize(("last_night", "tonight", "fires"), [(63, 63, True), (63, 62.9, False), (62.9, 63, False)])
def test_the_sustained_shift_needs_4_bpm_on_two_consecutive_nights(
    last_night: float, tonight: float, fires: bool
) -> None:
    rules = found({"resting_heart_rate": series([*RHR, last_night], tonight)})
    assert rules == (["rhr-sustained:resting_heart_rate"] if fires else [])


def test_one_elevated_night_is_not_a_sustained_shift() -> None:
    assert "rhr-sustained:resting_heart_rate" not in found({"resting_heart_rate": series([*RHR, 59], 70)})


def test_two_abnormal_nightly_signals_escalate_to_one_warning() -> None:
    daily = {"resting_heart_rate": series(RHR, 68), "hrv_rmssd": series(HRV, 20)}
    findings = baseline_findings(daily, TODAY)
    assert [f"{f.rule}:{f.metric}" for f in findings] == [
        "modified-z:resting_heart_rate",
        "modified-z:hrv_rmssd",
        "multi-signal:nightly_signals",
    ]
    escalation = findings[-1]
    assert (escalation.severity, escalation.value, escalation.baseline) == ("warning", 2.0, 2.0)
    assert "hrv_rmssd, resting_heart_rate" in escalation.detail


def test_a_single_signal_or_a_daytime_one_does_not_escalate() -> None:
    assert found({"resting_heart_rate": series(RHR, 68)}) == ["modified-z:resting_heart_rate"]
    monday = SUNDAY + DAY
    daily = {
        "resting_heart_rate": series(RHR, 68, end=monday),
        "steps": series(weekly_steps(8, monday), 3000, end=monday),
    }
    assert found(daily, day=monday) == ["modified-z:resting_heart_rate", "modified-z:steps"]


def test_a_sustained_shift_counts_once_towards_escalation() -> None:
    daily = {"resting_heart_rate": series([*RHR, 63], 63), "hrv_rmssd": series(HRV, 20)}
    assert found(daily) == ["modified-z:hrv_rmssd", "rhr-sustained:resting_heart_rate", "multi-signal:nightly_signals"]


def test_a_statistical_finding_becomes_a_statistical_alert() -> None:
    (finding,) = baseline_findings({"resting_heart_rate": series(RHR, 68)}, TODAY)
    alert = to_alert(finding, 7)
    assert (alert.category, alert.kind, alert.threshold) == ("statistical", "statistical", 59.0)
    assert alert.dedupe_key == "modified-z:7:resting_heart_rate:2024-03-29" == to_alert(finding, 7).dedupe_key
    assert isinstance(finding, Finding)


@pytest.mark.parametrize("kind", ["normal", "ties", "zeros"])
def test_the_rules_plain_float_baseline_is_robust_baseline_to_the_bit(kind: str) -> None:
    # The rules work out windows in plain floats (baseline._robust); robust_baseline is the reference.
    rng = np.random.default_rng(len(kind))
    for _ in range(3_000):
        size = int(rng.integers(1, 60))
        values = {
            "normal": rng.normal(60, 8, size),
            "ties": rng.integers(55, 58, size).astype(float),  # MAD 0 often: the fallback scale
            "zeros": rng.choice([-0.0, 0.0, -0.5, 0.5], size),
        }[kind]
        expected, found = robust_baseline(values), _robust(values.tolist())
        assert (found.median, found.n, found.fallback) == (expected.median, expected.n, expected.fallback)
        assert math.copysign(1, found.median) == math.copysign(1, expected.median)
        assert found.scale == expected.scale or (math.isnan(found.scale) and math.isnan(expected.scale))


@pytest.mark.parametrize("kind", ["normal", "ties", "heavy"])
def test_a_value_judged_without_the_mad_is_never_beyond_the_limit(kind: str) -> None:
    # The rules skip the MAD when a lower bound on it already keeps |M| within the limit; values
    # a hair either side of the limit check that the bound never lets a finding through.
    rng = np.random.default_rng(len(kind))
    skipped = 0
    for _ in range(3_000):
        size = int(rng.integers(1, 60))
        values = {
            "normal": rng.normal(60, 8, size),
            "ties": rng.integers(55, 58, size).astype(float),
            "heavy": rng.standard_cauchy(size),
        }[kind].tolist()
        base = _robust(values)
        for m in (rng.uniform(-5, 5), Z_LIMIT * (1 - 1e-12), -Z_LIMIT * (1 + 1e-12), Z_LIMIT * 0.999):
            x = base.median + m * base.scale if math.isfinite(base.scale) else base.median + m
            if _surely_within(x, base.median, sorted(values)):
                skipped += 1
                assert abs((x - base.median) / base.scale) <= Z_LIMIT
    assert skipped > 500  # the bound does skip most values away from the limit


def test_baseline_rules_find_day_by_day_what_baseline_findings_finds() -> None:
    rng = np.random.default_rng(3)
    end = TODAY + 3 * DAY
    daily = {
        "resting_heart_rate": series([*rng.normal(60, 2, 40).round(), 68, 69, 70], 71, end),
        "hrv_rmssd": series([*rng.normal(45, 4, 40), None, 20, 0.0], 19, end),
        "steps": series([*rng.normal(8000, 900, 50).round(), 900, None], 800, end),
    }
    rules = BaselineRules(daily)
    flagged: dict[str, set[np.datetime64]] = {}
    for day in np.arange(TODAY - DAY, end + 2 * DAY):
        expected = baseline_findings(daily, day, flagged)
        assert rules.findings(day, flagged) == expected
        for finding in expected:
            flagged.setdefault(finding.metric, set()).add(day)
    assert flagged  # the series do flag days, which later days leave out of their baselines
