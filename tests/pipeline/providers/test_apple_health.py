"""Apple Health: an export.zip, parsed as a stream, into canonical readings, sessions and a sync run."""

from __future__ import annotations

import math
import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import asyncpg
import pytest

from db import connections, sync_runs, tenants
from db.metrics import Reading
from db.sessions import Session
from pipeline import runtime, vocabulary
from pipeline.errors import PermanentSyncError
from pipeline.jobs import EXPORT_GRACE, forget_exports
from pipeline.providers import PROVIDERS, Window
from pipeline.providers.apple_export import convert
from pipeline.providers.apple_health import AppleHealth
from pipeline.settings import PipelineSettings
from pipeline.sync import run_sync
from pipeline.triggers import sweep
from tests.fakes.apple_health import export_xml, export_zip, record, sleep, statistics, workout

PARIS = timezone(timedelta(hours=1))
NOW = datetime.now(UTC).replace(microsecond=0)
DAY = (NOW - timedelta(days=3)).astimezone(PARIS).replace(hour=0, minute=0, second=0)
WINDOW = Window(NOW - timedelta(days=90), NOW)


async def read(tmp_path: Path, xml: bytes, window: Window = WINDOW) -> list[Reading | Session]:
    provider = AppleHealth(tmp_path)
    (tmp_path / "export1.zip").write_bytes(export_zip(xml))
    return [item async for item in provider.fetch({}, window, {"export": "export1.zip"})]


def readings(items: list[Reading | Session], metric: str) -> list[tuple[datetime, float, str]]:
    return [(r.recorded_at, round(r.value, 2), r.unit) for r in items if isinstance(r, Reading) and r.metric == metric]


async def test_units_are_converted_at_the_edge_into_the_canonical_vocabulary(tmp_path: Path) -> None:
    at = DAY + timedelta(hours=8)
    items = await read(tmp_path, export_xml(
        record("HeartRate", 72, "count/min", at),
        record("RestingHeartRate", 55, "count/min", at),
        record("HeartRateVariabilitySDNN", 48.5, "ms", at),
        record("BodyMass", 165.3465, "lb", at, source="Withings"),
        record("BloodPressureSystolic", 128, "mmHg", at),
        record("BloodPressureDiastolic", 82, "mmHg", at),
        record("OxygenSaturation", 0.97, "%", at),
        record("RespiratoryRate", 14.5, "count/min", at),
        record("BodyTemperature", 98.6, "degF", at),
        record("BloodGlucose", 5.5, "mmol<180.1558800000541>/L", at, source="Dexcom G7"),
        record("BloodGlucose", 104, "mg/dL", at + timedelta(minutes=5), source="Dexcom G7"),
        record("VO2Max", 41.2, "mL/min·kg", at),
        record("DistanceWalkingRunning", 1.2, "km", at),  # not in the vocabulary: ignored
    ))  # fmt: skip

    assert readings(items, "heart_rate") == [(at, 72, "bpm")]
    assert readings(items, "resting_heart_rate") == [(at, 55, "bpm")]
    # SDNN is kept as itself: it is not the RMSSD the other providers give.
    assert readings(items, "hrv_sdnn") == [(at, 48.5, "ms")] and readings(items, "hrv_rmssd") == []
    assert readings(items, "weight") == [(at, 75.0, "kg")]
    assert readings(items, "blood_pressure_systolic") == [(at, 128, "mmHg")]
    assert readings(items, "blood_pressure_diastolic") == [(at, 82, "mmHg")]
    assert readings(items, "spo2") == [(at, 97.0, "%")]
    assert readings(items, "respiratory_rate") == [(at, 14.5, "/min")]
    assert readings(items, "body_temperature") == [(at, 37.0, "°C")]
    assert readings(items, "glucose") == [(at, 99.09, "mg/dL"), (at + timedelta(minutes=5), 104, "mg/dL")]
    assert readings(items, "vo2max") == [(at, 41.2, "mL/kg/min")]
    assert all(vocabulary.problem(r, WINDOW.start, WINDOW.end) is None for r in items if isinstance(r, Reading))
    assert {r.metric for r in items if isinstance(r, Reading)} <= AppleHealth.metrics


async def test_steps_and_energy_become_one_daily_total_per_local_day_from_the_largest_source(tmp_path: Path) -> None:
    items = await read(tmp_path, export_xml(
        record("StepCount", 3000, "count", DAY + timedelta(hours=9), DAY + timedelta(hours=9, minutes=20), "iPhone"),
        record("StepCount", 2000, "count", DAY + timedelta(hours=18), DAY + timedelta(hours=18, minutes=9), "iPhone"),
        record("StepCount", 4500, "count", DAY + timedelta(hours=9), DAY + timedelta(hours=9, minutes=20)),
        # 23:30 in Paris is the next day in UTC, but it is this day's walk.
        record("StepCount", 700, "count", DAY + timedelta(hours=23, minutes=30), DAY + timedelta(hours=23, minutes=40)),
        record("StepCount", 1234, "count", DAY + timedelta(days=1, hours=10), DAY + timedelta(days=1, hours=11)),
        record("ActiveEnergyBurned", 418.4, "kJ", DAY + timedelta(hours=9), DAY + timedelta(hours=10)),
        record("ActiveEnergyBurned", 150, "Cal", DAY + timedelta(hours=12), DAY + timedelta(hours=13)),
    ))  # fmt: skip

    # The iPhone counted 5,000 and the Watch 5,200 of the same walking: never 10,200.
    assert readings(items, "steps") == [(DAY, 5200, "count"), (DAY + timedelta(days=1), 1234, "count")]
    assert readings(items, "steps")[0][0].utcoffset() == timedelta(hours=1)
    assert readings(items, "active_energy") == [(DAY, 250.0, "kcal")]


async def test_sleep_segments_become_one_session_with_real_ends_and_the_nights_readings(tmp_path: Path) -> None:
    bed = DAY + timedelta(hours=23)
    stages = [("AsleepCore", 0, 90), ("AsleepDeep", 90, 150), ("Awake", 150, 160), ("AsleepREM", 160, 220),
              ("AsleepCore", 220, 420)]  # fmt: skip
    xml = export_xml(
        sleep("InBed", bed - timedelta(minutes=20), bed + timedelta(minutes=440), source="iPhone"),
        *(sleep(stage, bed + timedelta(minutes=a), bed + timedelta(minutes=b)) for stage, a, b in stages),
        # A nap the next afternoon: a session of its own, but not the night's readings.
        sleep("AsleepUnspecified", bed + timedelta(hours=15), bed + timedelta(hours=15, minutes=40)),
    )
    items = await read(tmp_path, xml)

    sessions = [s for s in items if isinstance(s, Session)]
    night = Session("sleep", bed, bed + timedelta(minutes=420), None,
                    {"light_min": 290.0, "deep_min": 60.0, "awake_min": 10.0, "rem_min": 60.0})  # fmt: skip
    nap = Session("sleep", bed + timedelta(hours=15), bed + timedelta(hours=15, minutes=40), None, {})
    # The iPhone's time in bed overlaps the Watch's night and has no sleep in it: the Watch's wins.
    assert sessions == [night, nap]
    end = bed + timedelta(minutes=420)
    assert readings(items, "sleep_duration") == [(end, 410.0, "min")]
    assert readings(items, "sleep_deep") == [(end, 60.0, "min")] and readings(items, "sleep_rem") == [
        (end, 60.0, "min")
    ]
    assert all(vocabulary.session_problem(s, WINDOW.start, WINDOW.end) is None for s in sessions)


async def test_workouts_carry_their_activity_and_totals_in_both_export_formats(tmp_path: Path) -> None:
    start = DAY + timedelta(hours=18)
    items = await read(tmp_path, export_xml(
        workout("Running", start, start + timedelta(minutes=30), totalDistance="5.2", totalDistanceUnit="km",
                totalEnergyBurned="1255.2", totalEnergyBurnedUnit="kJ"),
        workout("HighIntensityIntervalTraining", start + timedelta(days=1), start + timedelta(days=1, minutes=20),
                statistics("ActiveEnergyBurned", "kcal", sum="210")
                + statistics("HeartRate", "count/min", average="151", minimum="98", maximum="178")),
    ))  # fmt: skip

    assert [s for s in items if isinstance(s, Session)] == [
        Session("workout", start, start + timedelta(minutes=30), "running",
                {"energy_kcal": 300.0, "distance_m": 5200.0}),
        Session("workout", start + timedelta(days=1), start + timedelta(days=1, minutes=20),
                "high_intensity_interval_training",
                {"energy_kcal": 210.0, "avg_heart_rate_bpm": 151.0, "max_heart_rate_bpm": 178.0}),
    ]  # fmt: skip


async def test_records_that_cannot_be_read_are_passed_on_to_be_counted_invalid_and_the_rest_kept(
    tmp_path: Path,
) -> None:
    at = DAY + timedelta(hours=8)
    items = await read(tmp_path, export_xml(
        record("HeartRate", "seventy", "count/min", at),
        record("HeartRate", 71, "count/min", "yesterday morning"),
        record("BodyMass", 11.8, "st", at),
        record("OxygenSaturation", 97, "%", at),  # a percentage where HealthKit writes a fraction
        record("StepCount", "n/a", "count", at),
        sleep("AsleepCore", at, at).replace(f'startDate="{at:%Y-%m-%d %H:%M:%S %z}"', 'startDate="soon"'),
        record("HeartRate", 64, "count/min", at),
        record("HeartRate", 66, "count/min", NOW - timedelta(days=400)),  # outside the window: not read at all
    ))  # fmt: skip

    refused = [i for i in items if _problem(i) is not None]
    assert len(refused) == 6 and len(items) == 7
    assert readings(items, "heart_rate")[-1] == (at, 64, "bpm")
    assert any(_problem(i) == "weight in 'st', expected 'kg'" for i in items)


def _problem(item: Reading | Session) -> str | None:
    if isinstance(item, Session):
        return vocabulary.session_problem(item, WINDOW.start, WINDOW.end)
    return vocabulary.problem(item, WINDOW.start, WINDOW.end)


async def test_an_entity_declaration_is_refused_before_anything_expands(tmp_path: Path) -> None:
    laughs = (
        '<?xml version="1.0"?>\n<!DOCTYPE HealthData [\n<!ENTITY lol "lol">\n<!ENTITY lol2 "&lol;&lol;&lol;">\n]>\n'
    )
    with pytest.raises(PermanentSyncError, match="declares the entity 'lol'"):
        await read(tmp_path, export_xml(record("HeartRate", "&lol2;", "count/min", DAY), head=laughs + "<HealthData>"))


async def test_an_external_entity_is_refused(tmp_path: Path) -> None:
    xxe = '<?xml version="1.0"?>\n<!DOCTYPE HealthData [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n<HealthData>'
    with pytest.raises(PermanentSyncError, match="declares the entity 'xxe'"):
        await read(tmp_path, export_xml(record("HeartRate", "&xxe;", "count/min", DAY), head=xxe))


async def test_a_truncated_export_fails_permanently_after_yielding_what_came_before(tmp_path: Path) -> None:
    start = NOW - timedelta(days=20)
    xml = export_xml(
        *(record("HeartRate", 60 + i % 30, "count/min", start + timedelta(minutes=i)) for i in range(9000))
    )
    provider = AppleHealth(tmp_path)
    (tmp_path / "cut.zip").write_bytes(export_zip(xml[: len(xml) - 5000]))
    got: list[Reading | Session] = []
    with pytest.raises(PermanentSyncError, match="not well-formed XML"):
        async for item in provider.fetch({}, WINDOW, {"export": "cut.zip"}):
            got.append(item)
    assert len(got) > 4000  # the first MiB's readings reached the sync before the error


async def test_names_that_are_not_ours_and_files_that_are_gone_fail_permanently(tmp_path: Path) -> None:
    provider = AppleHealth(tmp_path / "uploads")
    (tmp_path / "secret.zip").write_bytes(export_zip(export_xml()))
    with pytest.raises(PermanentSyncError, match="names no valid export"):
        [i async for i in provider.fetch({}, WINDOW, {"export": "../secret.zip"})]
    with pytest.raises(PermanentSyncError, match="upload it again"):
        [i async for i in provider.fetch({}, WINDOW, {"export": "gone.zip"})]
    assert [i async for i in provider.fetch({}, WINDOW, {})] == []  # nothing uploaded yet: nothing to read


@pytest.fixture
def apple(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AppleHealth:
    provider = AppleHealth(tmp_path)
    monkeypatch.setitem(PROVIDERS, "apple_health", provider)
    return provider


async def _imported(pool: asyncpg.Pool, connection_id: int) -> asyncpg.Record:
    async with pool.acquire() as conn:
        run_id = await sync_runs.create(conn, connection_id, "import")
    outcome = await run_sync(pool, runtime.current().keyring, PipelineSettings(redis_url=None), run_id)
    assert outcome is not None and outcome.status == "completed"
    row: asyncpg.Record = await pool.fetchrow("SELECT * FROM sync_runs WHERE id = $1", run_id)
    return row


async def test_an_import_run_stores_the_export_counts_bad_records_and_a_second_import_writes_nothing(
    pool: asyncpg.Pool, apple: AppleHealth
) -> None:
    old = NOW - timedelta(days=60)  # older than a first sync's 30 days: an import reads the retention period
    xml = export_xml(
        *(record("HeartRate", 60 + i % 40, "count/min", old + timedelta(minutes=7 * i)) for i in range(2500)),
        record("StepCount", 4000, "count", DAY + timedelta(hours=9), DAY + timedelta(hours=10)),
        record("BodyMass", 70.2, "kg", DAY + timedelta(hours=7)),
        record("BodyMass", "heavy", "kg", DAY + timedelta(hours=7, minutes=1)),
        sleep("AsleepCore", DAY + timedelta(hours=1), DAY + timedelta(hours=7)),
        record("HeartRate", 61, "count/min", NOW - timedelta(days=200)),
    )
    (apple.upload_dir / "abc123.zip").write_bytes(export_zip(xml))
    async with pool.acquire() as conn:
        tenant_id = await tenants.ensure_tenant(conn, "apple-import", "Apple import")
        user_id = await tenants.ensure_user(conn, tenant_id, "p1", "Pat One")
        connection_id = await connections.upsert(
            conn, runtime.current().keyring, user_id=user_id, provider="apple_health", tokens={},
            settings={"export": "abc123.zip"},
        )  # fmt: skip

    first = await _imported(pool, connection_id)
    # 2,500 heart rates, a daily step total, a weight, a night and its sleep_duration; one bad weight.
    assert (first["rows_received"], first["rows_written"], first["rows_invalid"]) == (2505, 2504, 1)
    assert first["window_start"] < old
    stored = await pool.fetchval("SELECT count(*) FROM metrics WHERE user_id = $1 AND metric = 'heart_rate'", user_id)
    assert stored == 2500
    assert await pool.fetchval("SELECT count(*) FROM sessions WHERE user_id = $1", user_id) == 1

    again = await _imported(pool, connection_id)
    assert (again["rows_received"], again["rows_written"], again["rows_unchanged"]) == (2505, 0, 2504)
    assert await pool.fetchval("SELECT count(*) FROM metrics WHERE user_id = $1", user_id) == 2503


async def test_the_sweeps_never_pull_an_export_connection(pool: asyncpg.Pool, apple: AppleHealth) -> None:
    async with pool.acquire() as conn:
        tenant_id = await tenants.ensure_tenant(conn, "apple-sweep", "Apple sweep")
        user_id = await tenants.ensure_user(conn, tenant_id, "p1", "Pat One")
        connection_id = await connections.upsert(
            conn, runtime.current().keyring, user_id=user_id, provider="apple_health", tokens={}, settings={}
        )
    # Asked for by name, and still skipped: the sweep knows it has nothing to pull.
    assert await sweep(pool, "daily", datetime.now(UTC) + timedelta(minutes=1), providers=["apple_health"]) == []
    assert await pool.fetchval("SELECT count(*) FROM sync_runs WHERE connection_id = $1", connection_id) == 0


def test_conversion_scales_fractions_and_molar_glucose_and_leaves_an_unknown_unit_for_the_sync_to_refuse() -> None:
    assert convert("%", "%", 0.954) == (95.4, "%")
    assert convert("mg/dL", "mmol/L", 10) == (pytest.approx(180.15588), "mg/dL")
    assert convert("kg", "stone", 11) == (11, "stone")
    assert math.isnan(convert("bpm", "count/min", math.nan)[0])


async def test_the_cleanup_deletes_exports_no_connection_reads_once_they_are_a_day_old(
    pool: asyncpg.Pool, apple: AppleHealth
) -> None:
    async with pool.acquire() as conn:
        tenant_id = await tenants.ensure_tenant(conn, "apple-cleanup", "Apple cleanup")
        for name, status in (("kept.zip", "active"), ("revoked.zip", "revoked")):
            user_id = await tenants.ensure_user(conn, tenant_id, name, name)
            connection_id = await connections.upsert(
                conn, runtime.current().keyring, user_id=user_id, provider="apple_health", tokens={},
                settings={"export": name},
            )  # fmt: skip
            await connections.set_status(conn, connection_id, status, None)
    day_old = (datetime.now(UTC) - timedelta(days=2)).timestamp()
    for name in ("kept.zip", "revoked.zip", ".abandoned.part", "fresh.zip"):
        (apple.upload_dir / name).write_bytes(b"PK")
        if name != "fresh.zip":
            os.utime(apple.upload_dir / name, (day_old, day_old))

    assert await forget_exports(pool, datetime.now(UTC) - EXPORT_GRACE) == 2
    # The export a connection reads stays, and so does an upload that may still be arriving.
    assert sorted(p.name for p in apple.upload_dir.iterdir()) == ["fresh.zip", "kept.zip"]
