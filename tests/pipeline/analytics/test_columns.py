"""Readings as columns: built from Reading objects or from ``db.analytics.readings``, they give
the engines the same input, so ``analyse`` finds the same numbers either way."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import asyncpg
import numpy as np
import pytest

from db import analytics, metrics, tenants
from db.metrics import Reading
from pipeline.analytics.analysis import analyse
from pipeline.analytics.columns import ReadingColumns

END = datetime(2026, 11, 1, 7, tzinfo=UTC)
LEVELS = {
    "resting_heart_rate": 60.0,
    "hrv_rmssd": 45.0,
    "sleep_duration": 420.0,
    "sleep_efficiency": 85.0,
    "sleep_rem": 90.0,
    "spo2": 95.0,
    "skin_temp_deviation": 0.0,
    "steps": 8000.0,
    "weight": 80.0,
}


def user_readings(rng: np.random.Generator) -> list[Reading]:
    """90 days of daily metrics with gaps, outliers and a shared daily factor, several readings on some
    days, and either a 5-minute CGM trace or a few meter readings of glucose."""
    found = []
    shared = rng.normal(size=90)  # a day's common factor, so that some metrics correlate
    for metric, level in LEVELS.items():
        for day in range(90):
            if rng.random() < 0.15:
                continue
            for _ in range(1 if rng.random() < 0.8 else 3):
                value = abs(level * (1 + 0.05 * (shared[day] + rng.normal()))) * (1.5 if rng.random() < 0.03 else 1)
                if metric == "skin_temp_deviation":
                    value = rng.normal(0, 0.01)  # rounds to -0.0 as well as 0.0
                at = END - timedelta(days=89 - day, hours=float(rng.uniform(0, 6)))  # the same UTC day
                found.append(Reading(metric, at, round(float(value), 2), "x"))
    if rng.random() < 0.5:
        trace = np.clip(120 + np.cumsum(rng.normal(0, 6, 16 * 288)), 40, 350).round()
        found += [Reading("glucose", END - timedelta(minutes=5 * i), float(g), "mg/dL") for i, g in enumerate(trace)]
    else:
        meter = rng.integers(50, 300, 9)
        found += [Reading("glucose", END - timedelta(days=d, hours=3), float(g), "mg/dL") for d, g in enumerate(meter)]
    found.sort(key=lambda r: (r.recorded_at, r.metric))
    return found


def test_from_readings_keeps_each_metrics_readings_in_the_given_order() -> None:
    readings = [
        Reading("b", END, 2.0, "x"),
        Reading("a", END - timedelta(hours=1), 1.0, "x"),
        Reading("b", END - timedelta(hours=2), 3.0, "x"),
    ]
    columns = ReadingColumns.from_readings(readings)
    assert columns.names == ("a", "b") and len(columns) == 3
    seconds, values = columns.of("b")
    assert values.tolist() == [2.0, 3.0] and seconds.tolist() == [END.timestamp(), END.timestamp() - 7200]
    assert [part.size for part in columns.of("glucose")] == [0, 0]


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Asia/Kolkata"])
def test_analyse_finds_the_same_on_columns_as_on_readings(zone: str) -> None:
    rng = np.random.default_rng(len(zone))
    for _ in range(6):
        readings = user_readings(rng)
        today = readings[-1].recorded_at.date()
        found = {}
        for name, given in (("rows", readings), ("columns", ReadingColumns.from_readings(readings))):
            analysis = analyse(given, zone, check_from=today - timedelta(days=20), today=today, max_q=0.05)
            assert analysis is not None
            found[name] = json.dumps(analysis.as_json(), sort_keys=True)
        assert found["rows"] == found["columns"]


# --- From the database: analytics.readings holds what latest returns ---


ODD_TIMES = [
    END - timedelta(days=2, microseconds=123_457),
    END - timedelta(days=3, microseconds=999_999),
    datetime(1999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    datetime(1969, 7, 20, 20, 17, 40, 1, tzinfo=UTC),
]


async def test_analytics_readings_are_what_latest_returns_as_columns(conn: asyncpg.Connection) -> None:
    tenant = await tenants.ensure_tenant(conn, "columns", "Columns")
    users = [await tenants.ensure_user(conn, tenant, f"u{i}", f"User {i}") for i in range(3)]
    rng = np.random.default_rng(5)
    for user_id in users[:2]:
        for provider in ("oura", "apple", "Withings"):  # mixed case: the collation orders them
            readings = [r for r in user_readings(rng) if rng.random() < 0.5]
            # Two providers at the same instant: latest orders them by provider, and so must we.
            readings += [Reading("glucose", END - timedelta(hours=h), 100.0 + h, "mg/dL") for h in range(3)]
            # Microseconds too, and times before 2000 and 1970: seconds come from PostgreSQL's own count.
            readings += [Reading("vo2max", when, 40.0, "mL/kg/min") for when in ODD_TIMES]
            await metrics.upsert(conn, user_id, provider, None, readings)
    since = {users[0]: datetime(1960, 1, 1, tzinfo=UTC), users[1]: END - timedelta(days=30), users[2]: END}

    found = await analytics.readings(conn, since)

    assert list(found) == users
    assert found[users[2]].names == () and found[users[2]].seconds.size == found[users[2]].values.size == 0
    for user_id in users[:2]:
        expected = ReadingColumns.from_readings(await metrics.latest(conn, user_id, since[user_id]))
        got = found[user_id]
        assert got.names == expected.names
        assert got.metric.tolist() == np.sort(expected.metric, kind="stable").tolist()
        for i, name in enumerate(expected.names):
            seconds, values = expected.of(name)
            assert got.seconds[got.metric == i].tolist() == seconds.tolist()
            assert got.values[got.metric == i].tolist() == values.tolist()


async def test_analytics_readings_of_one_provider_come_in_time_order_whatever_order_they_were_written(
    conn: asyncpg.Connection,
) -> None:
    tenant = await tenants.ensure_tenant(conn, "columns", "Columns")
    user_id = await tenants.ensure_user(conn, tenant, "u0", "User 0")
    days = [END - timedelta(days=d) for d in range(10)]
    # Newest days first, then a backfill of older ones: the table holds them out of time order.
    for part in (days[:4], days[4:]):
        readings = [Reading(metric, when, float(d), "x") for d, when in enumerate(part) for metric in ("a", "b")]
        await metrics.upsert(conn, user_id, "oura", None, readings)

    found = (await analytics.readings(conn, {user_id: END - timedelta(days=30)}))[user_id]

    assert found.names == ("a", "b") and found.metric.tolist() == [0] * 10 + [1] * 10
    expected = sorted(when.timestamp() for when in days)
    assert found.seconds[found.metric == 0].tolist() == found.seconds[found.metric == 1].tolist() == expected
