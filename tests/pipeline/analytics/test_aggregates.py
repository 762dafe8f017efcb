"""Daily aggregates by the user's local day, with rolling averages over the days that have data."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from db.metrics import Reading
from pipeline.analytics import aggregates
from pipeline.analytics.aggregates import _by_key_then_value, daily, daily_many, local_days
from pipeline.analytics.columns import ReadingColumns


def reading(metric: str, when: str, value: float) -> Reading:
    return Reading(metric, datetime.fromisoformat(when).replace(tzinfo=UTC), value, "bpm")


def test_a_reading_late_in_the_evening_counts_for_the_local_day_not_the_utc_day() -> None:
    found = daily([reading("heart_rate", "2026-11-21T07:30:00", 70)], "Pacific/Honolulu")

    assert [s.day for s in found.stats] == [date(2026, 11, 20)]


def test_avg_min_max_and_count_per_metric_and_day() -> None:
    found = daily(
        [
            reading("heart_rate", "2026-11-20T08:00:00", 60),
            reading("heart_rate", "2026-11-20T12:00:00", 90),
            reading("heart_rate", "2026-11-20T18:00:00", 75),
            reading("resting_heart_rate", "2026-11-20T07:00:00", 58),
        ],
        "UTC",
    )

    by_metric = {s.metric: s for s in found.stats}
    hr = by_metric["heart_rate"]
    assert (hr.avg, hr.min, hr.max, hr.count) == (75, 60, 90, 3)
    assert by_metric["resting_heart_rate"].count == 1
    assert found.minima["heart_rate"].value_on(np.datetime64("2026-11-20")) == 60
    assert found.maxima["heart_rate"].value_on(np.datetime64("2026-11-20")) == 90


def test_rolling_averages_use_the_trailing_window_and_skip_missing_days() -> None:
    values = {1: 10.0, 2: 20.0, 3: 30.0, 9: 90.0, 10: 100.0}
    found = daily([reading("steps", f"2026-11-{d:02d}T07:00:00", v) for d, v in values.items()], "UTC")

    rows = {s.day.day: s for s in found.stats}
    assert rows[3].avg_7d == pytest.approx(20.0)  # days 1-3
    assert rows[9].avg_7d == pytest.approx(60.0)  # days 3..9 have 3 and 9
    assert rows[10].avg_7d == pytest.approx(95.0)  # days 4..10 have 9 and 10
    assert rows[10].avg_30d == pytest.approx(50.0)  # every day
    assert 5 not in rows  # a missing day is absent, not zero


def test_input_order_does_not_matter() -> None:
    readings = [reading("spo2", f"2026-11-{d:02d}T0{h}:00:00", 90 + d + h) for d in range(1, 11) for h in (1, 5)]

    assert daily(readings, "UTC").stats == daily(list(reversed(readings)), "UTC").stats


@pytest.mark.parametrize("zone", ["Europe/London", "America/Santiago", "Pacific/Auckland", "Asia/Kolkata", "UTC"])
@pytest.mark.parametrize("span_days", [365, 1100])  # a year's quarter hours are marked, three years' sorted
def test_local_days_match_converting_each_reading_across_daylight_saving_changes(zone: str, span_days: int) -> None:
    rng = np.random.default_rng(3)
    start = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    moments = [datetime.fromtimestamp(start + s, UTC) for s in rng.uniform(0, span_days * 86400, 3000)]
    readings = [Reading("heart_rate", m, 60.0, "bpm") for m in moments]

    expected = np.array([m.astimezone(ZoneInfo(zone)).date() for m in moments], dtype="datetime64[D]")
    assert (local_days(readings, zone) == expected).all()


# --- Every metric at once: the same floats as one metric at a time ---


def rolling_mean(days: np.ndarray, values: np.ndarray, window: int) -> np.ndarray:
    """The definition, for one metric's days (sorted, unique): the mean over (day − window, day]."""
    start = np.searchsorted(days, days - window + 1, side="left")
    cumulative = np.concatenate(([0.0], np.cumsum(values)))
    end = np.arange(1, len(values) + 1)
    result: np.ndarray = (cumulative[end] - cumulative[start]) / (end - start)
    return result


def random_readings(rng: np.random.Generator) -> list[Reading]:
    """Up to 12 metrics over ~120 days with gaps; some days hold several readings, some values repeat."""
    start = datetime(2026, 7, 1, tzinfo=UTC).timestamp()
    found = []
    for m in range(int(rng.integers(1, 13))):
        count = int(rng.integers(1, 300))
        moments = start + rng.uniform(0, 120 * 86_400, count)
        values = np.round(rng.normal(0 if m % 3 == 0 else 60, 5, count), int(rng.integers(0, 3)))
        found += [
            Reading(f"metric_{m}", datetime.fromtimestamp(t, UTC), float(v), "x")
            for t, v in zip(moments, values, strict=True)
        ]
    rng.shuffle(found)
    return found


@pytest.mark.parametrize("grid_cells", [aggregates.GRID_CELLS, 0])
def test_rolling_averages_equal_the_one_metric_definition(grid_cells: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # With no room for the calendar grid (decades of history, or windows far apart in one batch),
    # each window's start is searched instead: the same floats either way.
    monkeypatch.setattr(aggregates, "GRID_CELLS", grid_cells)
    rng = np.random.default_rng(11)
    for _ in range(100):
        found = daily(random_readings(rng), "UTC")
        for name, series in found.means.items():
            rows = found.metric == found.metrics.index(name)
            days = series.days.astype(np.int64)
            assert found.avg_7d[rows].tolist() == rolling_mean(days, series.values, 7).tolist()
            assert found.avg_30d[rows].tolist() == rolling_mean(days, series.values, 30).tolist()


def test_rolling_averages_of_series_with_no_day_missing_equal_the_definition(monkeypatch: pytest.MonkeyPatch) -> None:
    # A value every day for every metric (a device worn daily) skips the calendar grid: the same floats.
    calls: list[tuple[int, ...]] = []
    original = aggregates._rolling_means_full
    monkeypatch.setattr(aggregates, "_rolling_means_full", lambda avg: calls.append(avg.shape) or original(avg))
    rng = np.random.default_rng(12)
    start = datetime(2026, 7, 1, 8, tzinfo=UTC).timestamp()
    for _ in range(20):
        days, metrics = int(rng.integers(1, 100)), int(rng.integers(1, 8))
        users = []
        for _ in range(int(rng.integers(1, 5))):
            values = np.round(rng.normal(0, 1, (metrics, days)), int(rng.integers(0, 2)))
            values[rng.random(values.shape) < 0.2] = -0.0
            users.append(
                ReadingColumns(
                    tuple(f"m{m}" for m in range(metrics)),
                    np.repeat(np.arange(metrics), days),
                    np.tile(start + np.arange(days) * 86_400.0, metrics),
                    values.ravel(),
                )
            )
        for found in daily_many([(columns, "UTC") for columns in users]):
            for name, series in found.means.items():
                rows = found.metric == found.metrics.index(name)
                day_numbers = series.days.astype(np.int64)
                for window, averages in ((7, found.avg_7d), (30, found.avg_30d)):
                    assert averages[rows].tolist() == rolling_mean(day_numbers, series.values, window).tolist()
    assert len(calls) == 20


def test_ordering_by_key_then_value_is_lexsort() -> None:
    rng = np.random.default_rng(5)
    for trial in range(5_000):
        size = int(rng.integers(1, 200))
        key = rng.integers(0, int(rng.integers(1, 400)), size).astype(np.int64)
        values = rng.choice([-0.0, 0.0, 1.0, 1.5, -3.0], size) if trial % 2 else rng.normal(size=size)
        assert _by_key_then_value(key, values).tolist() == np.lexsort((values, key)).tolist()


@pytest.mark.parametrize("zone", ["UTC", "America/Santiago", "Asia/Kolkata"])
def test_columns_and_readings_give_the_same_aggregates(zone: str) -> None:
    rng = np.random.default_rng(8)
    for _ in range(20):
        readings = random_readings(rng)
        by_rows, by_columns = daily(readings, zone), daily(ReadingColumns.from_readings(readings), zone)
        assert by_rows.stats == by_columns.stats
        assert by_rows.avg.tolist() == by_columns.avg.tolist()


def test_a_batch_gives_each_user_what_daily_gives_it_alone() -> None:
    rng = np.random.default_rng(13)
    zones = ["UTC", "America/Santiago", "Asia/Kolkata", "UTC"]
    users = [(ReadingColumns.from_readings(random_readings(rng)), zones[i % len(zones)]) for i in range(12)]
    users.insert(5, (ReadingColumns.from_readings([reading("spo2", "1999-03-01T10:00:00", 97)]), "UTC"))

    found = daily_many(users)

    for (columns, zone), batched in zip(users, found, strict=True):
        alone = daily(columns, zone)
        assert batched.metrics == alone.metrics
        for field in ("metric", "day", "avg", "low", "high", "count", "avg_7d", "avg_30d"):
            assert getattr(batched, field).tolist() == getattr(alone, field).tolist(), field
    assert sum(len(d.day) for d in found) > 1_000  # the comparison is not of empty arrays
