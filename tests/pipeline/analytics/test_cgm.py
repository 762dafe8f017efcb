"""CGM metrics and events against the reference vectors (health-analytics §7) and the consensus rules (§1)."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest

from pipeline.analytics.cgm import (
    MGDL_PER_MMOL,
    CgmMetrics,
    GlucoseEvent,
    cgm_metrics,
    eag_mgdl,
    glucose_events,
    gmi_mmol_mol,
    gmi_percent,
)

Times = npt.NDArray[np.datetime64]
Glucose = npt.NDArray[np.float64]

T0 = np.datetime64("2024-03-01T00:00:00", "s")
FIVE_MIN_14_DAYS = 14 * 24 * 12  # 4,032
FIFTEEN_MIN_14_DAYS = 14 * 24 * 4  # 1,344


def at(minute: float) -> np.datetime64:
    return T0 + np.timedelta64(round(minute * 60), "s")


def every(minutes: float, *stretches: tuple[float, int], start: float = 0) -> tuple[Times, Glucose]:
    """Readings every ``minutes`` from ``start``: each stretch is (glucose, how many readings)."""
    values = np.concatenate([np.full(count, value, dtype=np.float64) for value, count in stretches])
    return np.array([at(start + i * minutes) for i in range(values.size)]), values


def join(*parts: tuple[Times, Glucose]) -> tuple[Times, Glucose]:
    return np.concatenate([t for t, _ in parts]), np.concatenate([g for _, g in parts])


def metrics(times: Times, mgdl: Glucose, interval_minutes: float | None = None) -> CgmMetrics:
    result = cgm_metrics(times, mgdl, interval_minutes)
    assert result is not None
    return result


def levels(events: list[GlucoseEvent]) -> list[str]:
    return [event.level for event in events]


# --- Reference vectors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mean", "gmi"),
    [(100, 5.7), (125, 6.3), (150, 6.9), (175, 7.5), (200, 8.1), (250, 9.3), (300, 10.5), (350, 11.7)],
)
def test_v1_gmi_matches_the_bergenstal_table_to_one_decimal(mean: float, gmi: float) -> None:
    assert round(gmi_percent(mean), 1) == gmi


def test_v2_a_mean_of_154_gives_a_gmi_of_7_0_percent() -> None:
    assert gmi_percent(154) == pytest.approx(6.99368, abs=1e-9)
    assert round(gmi_percent(154), 1) == 7.0


@pytest.mark.parametrize(("mean_mmol", "gmi"), [(5, 36.2), (7, 45.7), (10, 59.8)])
def test_v3_gmi_in_mmol_per_mol_matches_the_published_table(mean_mmol: float, gmi: float) -> None:
    assert round(gmi_mmol_mol(mean_mmol), 1) == gmi


@pytest.mark.parametrize(("a1c", "eag"), [(6, 125.5), (7, 154.2), (8, 182.9), (9, 211.6), (10, 240.3)])
def test_v4_eag_follows_the_adag_formula(a1c: float, eag: float) -> None:
    assert eag_mgdl(a1c) == pytest.approx(eag, abs=1e-6)


def test_the_mmol_factor_maps_the_bands_onto_the_consensus_mmol_values() -> None:
    assert MGDL_PER_MMOL == 18.0182
    assert [round(mgdl / MGDL_PER_MMOL, 1) for mgdl in (54, 70, 180, 250)] == [3.0, 3.9, 10.0, 13.9]


def test_the_metric_gmi_is_the_formula_on_the_mean() -> None:
    result = metrics(*every(5, (100, 6), (200, 6)))
    assert result.gmi == pytest.approx(3.31 + 0.02392 * 150)


# --- V7: sufficiency --------------------------------------------------------------------------


def grid_keeping(minutes: float, full: int, kept: int) -> tuple[Times, Glucose]:
    """The first ``kept`` − 1 readings of a ``full`` grid plus its last one: the span stays the same."""
    times, mgdl = every(minutes, (120, full))
    index = np.r_[: kept - 1, full - 1]
    return times[index], mgdl[index]


def test_v7_fourteen_full_days_of_5_minute_data_are_4032_readings_over_14_days() -> None:
    result = metrics(*every(5, (120, FIVE_MIN_14_DAYS)))
    assert (result.readings, result.days, result.active_percent, result.sufficient) == (4032, 14.0, 100.0, True)


@pytest.mark.parametrize(
    ("minutes", "full", "kept", "sufficient"),
    [(5, FIVE_MIN_14_DAYS, 2823, True), (5, FIVE_MIN_14_DAYS, 2822, False)]
    + [(15, FIFTEEN_MIN_14_DAYS, 941, True), (15, FIFTEEN_MIN_14_DAYS, 940, False)],
)
def test_v7_fourteen_days_are_sufficient_from_70_percent_of_the_expected_readings(
    minutes: float, full: int, kept: int, sufficient: bool
) -> None:
    result = metrics(*grid_keeping(minutes, full, kept))
    assert result.days == 14.0
    assert result.active_percent == pytest.approx(100 * kept / full)
    assert result.sufficient is sufficient


@pytest.mark.parametrize(("kept", "sufficient"), [(1414, True), (1413, False)])
def test_exactly_70_percent_active_is_sufficient(kept: int, sufficient: bool) -> None:
    # 10-minute readings over 14 days and 20 minutes: 2,020 expected, so 1,414 is 70 % exactly.
    result = metrics(*grid_keeping(10, 2020, kept))
    assert result.days >= 14
    assert result.active_percent == (70.0 if sufficient else pytest.approx(100 * 1413 / 2020))
    assert result.sufficient is sufficient


def test_a_full_record_a_reading_short_of_14_days_is_insufficient() -> None:
    result = metrics(*every(5, (120, FIVE_MIN_14_DAYS - 1)))
    assert result.active_percent == 100.0
    assert result.days == pytest.approx(14 - 5 / 1440)
    assert result.sufficient is False


def test_a_given_interval_overrides_the_median_gap() -> None:
    times, mgdl = every(15, (120, 97))  # 24 h of 15-minute readings, read as a 5-minute sensor
    result = metrics(times, mgdl, interval_minutes=5)
    assert result.active_percent == pytest.approx(100 * 97 / (96 * 3 + 1))
    assert result.days == pytest.approx((24 * 60 + 5) / 1440)


def test_active_percent_is_capped_at_100() -> None:
    times, mgdl = every(5, (120, 10))
    assert metrics(times, mgdl, interval_minutes=15).active_percent == 100.0


# --- Bands --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mgdl", "bands"),
    [
        (53, {"tbr_70", "tbr_54"}),  # V26: level 2 low
        (54, {"tbr_70"}),
        (69, {"tbr_70"}),  # V26: level 1 low
        (69.9, {"tbr_70"}),
        (70, {"tir"}),
        (180, {"tir"}),
        (180.1, {"tar_180"}),
        (250, {"tar_180"}),
        (250.1, {"tar_180", "tar_250"}),
        (251, {"tar_180", "tar_250"}),  # V26: level 2 high
    ],
)
def test_a_reading_lands_in_its_consensus_bands(mgdl: float, bands: set[str]) -> None:
    result = metrics(np.array([T0]), np.array([mgdl])).as_dict()
    assert {band: result[band] for band in ("tir", "tbr_70", "tbr_54", "tar_180", "tar_250")} == {
        band: 100.0 if band in bands else 0.0 for band in ("tir", "tbr_70", "tbr_54", "tar_180", "tar_250")
    }


def test_boundary_readings_are_counted_as_percent_of_readings() -> None:
    result = metrics(*every(5, (54, 1), (69.9, 1), (70, 1), (180, 1), (180.1, 1), (250, 1), (250.1, 1)))
    assert result.tbr_54 == 0.0
    assert result.tbr_70 == pytest.approx(200 / 7)
    assert result.tir == pytest.approx(200 / 7)
    assert result.tar_180 == pytest.approx(300 / 7)
    assert result.tar_250 == pytest.approx(100 / 7)


# --- GRI, mean, SD, CV ----------------------------------------------------------------------------


def test_gri_weighs_the_four_exclusive_bands() -> None:
    # 2 % < 54, 3 % in 54–69, 10 % in 181–250, 5 % > 250:
    # 3.0·2 + 2.4·3 + 1.6·5 + 0.8·10 = 6 + 7.2 + 8 + 8 = 29.2, and 3·(2 + 0.8·3) + 1.6·(5 + 0.5·10) agrees.
    result = metrics(*every(5, (50, 2), (60, 3), (120, 80), (200, 10), (260, 5)))
    assert result.gri == pytest.approx(29.2)


def test_gri_is_capped_at_100() -> None:
    assert metrics(*every(5, (45, 20))).gri == 100.0


def test_mean_sd_and_cv_match_numpy_with_the_sample_sd() -> None:
    rng = np.random.default_rng(2024)
    mgdl = rng.normal(150, 45, 500).clip(40, 400)
    times = T0 + np.arange(500) * np.timedelta64(5, "m")
    result = metrics(times, mgdl)
    assert result.mean == pytest.approx(np.mean(mgdl), rel=1e-12)
    assert result.sd == pytest.approx(np.std(mgdl, ddof=1), rel=1e-12)
    assert result.sd != pytest.approx(np.std(mgdl, ddof=0), rel=1e-6)
    assert result.cv == pytest.approx(100 * np.std(mgdl, ddof=1) / np.mean(mgdl), rel=1e-12)


def test_a_single_reading_has_no_sd_or_cv_and_is_insufficient() -> None:
    result = metrics(np.array([T0]), np.array([110.0]))
    assert (result.readings, result.days, result.active_percent, result.sufficient) == (1, 0.0, 100.0, False)
    assert math.isnan(result.sd) and math.isnan(result.cv)


# --- Events -------------------------------------------------------------------------------------


def test_fourteen_minutes_low_is_not_an_event() -> None:
    assert glucose_events(*every(1, (100, 30), (60, 14), (100, 30))) == []


def test_fifteen_minutes_low_is_an_event() -> None:
    assert glucose_events(*every(1, (100, 30), (60, 14), (58, 1), (100, 30))) == [
        GlucoseEvent("hypo_l1", at(30), at(44), 58.0)
    ]


def test_at_5_minute_sampling_three_readings_make_an_event_and_two_do_not() -> None:
    # iglu's rule: ⌈15 / 5⌉ = 3 consecutive readings, each standing for 5 minutes.
    assert glucose_events(*every(5, (100, 6), (65, 2), (100, 6))) == []
    assert levels(glucose_events(*every(5, (100, 6), (65, 3), (100, 6)))) == ["hypo_l1"]


def test_a_recovery_shorter_than_15_minutes_does_not_end_the_event() -> None:
    events = glucose_events(*every(5, (100, 6), (60, 4), (90, 2), (62, 1), (100, 6)))
    assert events == [GlucoseEvent("hypo_l1", at(30), at(60), 60.0)]


def test_a_recovery_of_15_minutes_ends_the_event() -> None:
    events = glucose_events(*every(5, (100, 6), (60, 4), (90, 3), (62, 3), (100, 6)))
    assert events == [GlucoseEvent("hypo_l1", at(30), at(45), 60.0), GlucoseEvent("hypo_l1", at(65), at(75), 62.0)]


def test_a_data_gap_splits_a_run() -> None:
    before = every(5, (100, 6), (60, 2))  # 10 minutes low, ending at minute 35
    contiguous = join(before, every(5, (60, 2), (100, 6), start=40))
    split = join(before, every(5, (60, 2), (100, 6), start=50))  # readings 15 minutes apart: two missed
    assert levels(glucose_events(*contiguous)) == ["hypo_l1"]
    assert glucose_events(*split) == []


def test_one_missed_reading_does_not_split_a_run() -> None:
    times, mgdl = join(every(5, (100, 6), (60, 2)), every(5, (60, 1), (100, 6), start=45))  # a 10-minute gap
    assert glucose_events(times, mgdl, interval_minutes=5) == [GlucoseEvent("hypo_l1", at(30), at(45), 60.0)]


def test_a_data_gap_closes_an_open_event() -> None:
    times, mgdl = join(every(5, (100, 6), (60, 6)), every(5, (61, 6), (100, 6), start=120))
    assert glucose_events(times, mgdl) == [
        GlucoseEvent("hypo_l1", at(30), at(55), 60.0),
        GlucoseEvent("hypo_l1", at(120), at(145), 61.0),
    ]


def test_an_event_still_open_at_the_end_of_the_data_counts() -> None:
    assert glucose_events(*every(5, (100, 6), (60, 4), (100, 2))) == [GlucoseEvent("hypo_l1", at(30), at(45), 60.0)]


def test_readings_exactly_at_a_threshold_are_back_not_beyond() -> None:
    assert glucose_events(*every(5, (100, 3), (70, 6), (100, 3))) == []
    assert levels(glucose_events(*every(5, (100, 3), (54, 6), (100, 3)))) == ["hypo_l1"]
    assert glucose_events(*every(5, (100, 3), (180, 6), (100, 3))) == []
    assert levels(glucose_events(*every(5, (100, 3), (250, 6), (100, 3)))) == ["hyper_l1"]


def test_a_level_2_hypo_is_counted_in_both_levels() -> None:
    # Convention: each level on its own, so the L2 event also sits inside an L1 event and counts there.
    times, mgdl = every(5, (100, 6), (65, 3), (48, 4), (65, 3), (100, 6))
    assert glucose_events(times, mgdl) == [
        GlucoseEvent("hypo_l1", at(30), at(75), 48.0),
        GlucoseEvent("hypo_l2", at(45), at(60), 48.0),
    ]
    result = metrics(times, mgdl)
    assert (result.hypo_l1_events, result.hypo_l2_events) == (1, 1)


def test_hyper_events_end_when_glucose_is_back_at_or_below_the_threshold() -> None:
    times, mgdl = every(5, (150, 3), (200, 3), (270, 3), (180, 3), (260, 3), (150, 3))
    assert glucose_events(times, mgdl) == [
        GlucoseEvent("hyper_l1", at(15), at(40), 270.0),
        GlucoseEvent("hyper_l2", at(30), at(40), 270.0),
        GlucoseEvent("hyper_l1", at(60), at(70), 260.0),
        GlucoseEvent("hyper_l2", at(60), at(70), 260.0),
    ]


def test_metric_event_counts_match_the_event_list() -> None:
    times, mgdl = every(5, (100, 6), (60, 4), (100, 6), (50, 3), (100, 6), (200, 4), (100, 6), (300, 3), (100, 3))
    result = metrics(times, mgdl)
    found = levels(glucose_events(times, mgdl))
    counts = (result.hypo_l1_events, result.hypo_l2_events, result.hyper_l1_events, result.hyper_l2_events)
    assert counts == (2, 1, 2, 1)
    assert counts == tuple(found.count(level) for level in ("hypo_l1", "hypo_l2", "hyper_l1", "hyper_l2"))


# --- Input handling -------------------------------------------------------------------------------


def day_with_excursions() -> tuple[Times, Glucose]:
    rng = np.random.default_rng(7)
    times, mgdl = every(5, (110, 40), (58, 6), (120, 60), (48, 4), (140, 50), (265, 8), (190, 6), (130, 114))
    return times, mgdl + rng.uniform(-0.4, 0.4, mgdl.size)


def test_duplicates_and_unsorted_input_give_the_same_result() -> None:
    times, mgdl = day_with_excursions()
    rng = np.random.default_rng(11)
    extra = rng.choice(times.size, 40, replace=False)
    order = rng.permutation(times.size + extra.size)
    messy_times, messy_mgdl = np.concatenate([times, times[extra]])[order], np.concatenate([mgdl, mgdl[extra]])[order]
    assert metrics(messy_times, messy_mgdl) == metrics(times, mgdl)
    assert glucose_events(messy_times, messy_mgdl) == glucose_events(times, mgdl)
    assert metrics(messy_times, messy_mgdl).readings == 288


def test_of_readings_sharing_a_timestamp_the_first_given_is_kept() -> None:
    times = np.array([at(10), at(0), at(10)])
    assert metrics(times, np.array([200.0, 100.0, 50.0])).mean == 150.0


def test_any_datetime64_unit_gives_the_same_metrics() -> None:
    times, mgdl = day_with_excursions()
    reference = metrics(times, mgdl).as_dict()
    for unit in ("m", "ms", "ns"):
        assert metrics(times.astype(f"datetime64[{unit}]"), mgdl).as_dict() == reference


def test_unreadable_readings_are_dropped() -> None:
    times, mgdl = every(5, (100, 4))
    times[1] = np.datetime64("NaT")
    mgdl[2] = np.nan
    assert (metrics(times, mgdl).readings, metrics(times, mgdl).mean) == (2, 100.0)


def test_no_readings_give_none_and_no_events() -> None:
    empty_times, empty_mgdl = np.array([], dtype="datetime64[s]"), np.array([], dtype=np.float64)
    assert cgm_metrics(empty_times, empty_mgdl) is None
    assert cgm_metrics(np.array([T0]), np.array([np.nan])) is None
    assert glucose_events(empty_times, empty_mgdl) == []


@pytest.mark.parametrize(
    ("times", "mgdl", "interval"),
    [
        (np.array([T0, T0]), np.array([100.0]), None),
        (np.array([1, 2]), np.array([100.0, 110.0]), None),
        (np.array([T0]), np.array([100.0]), 0.0),
        (np.array([T0]), np.array([100.0]), math.nan),
    ],
    ids=["lengths differ", "times are not datetime64", "zero interval", "NaN interval"],
)
def test_bad_input_is_a_value_error(times: Times, mgdl: Glucose, interval: float | None) -> None:
    with pytest.raises(ValueError):
        cgm_metrics(times, mgdl, interval)


def test_as_dict_has_exactly_the_metric_keys_in_order() -> None:
    result = metrics(*day_with_excursions()).as_dict()
    assert list(result) == [
        "readings",
        "days",
        "active_percent",
        "sufficient",
        "mean",
        "sd",
        "cv",
        "gmi",
        "gri",
        "tir",
        "tbr_70",
        "tbr_54",
        "tar_180",
        "tar_250",
        "hypo_l1_events",
        "hypo_l2_events",
        "hyper_l1_events",
        "hyper_l2_events",
    ]
    assert (type(result["readings"]), type(result["sufficient"]), type(result["hypo_l1_events"])) == (int, bool, int)
