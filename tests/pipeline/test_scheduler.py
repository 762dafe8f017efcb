"""The clock on a real, migrated database, with time moved by hand: each (job, slot) fires once
however many clocks tick, missed slots coalesce, and a failing job does not stop the next slot."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from db import create_pool, schedule
from db.env import SettingError
from pipeline.scheduler import MAX_SLEEP, OVERSLEEP, Clock, Job, cron, every, previous_fire_time
from pipeline.settings import PipelineSettings
from tests.helpers import eventually

QUARTER = timedelta(minutes=15)
# Saturday 5 January 2030, ten minutes before the daily slot; the weekly one is Sunday 04:00.
SATURDAY = datetime(2030, 1, 5, 2, 50, tzinfo=UTC)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2030, 1, day, hour, minute, tzinfo=UTC)


class FakeTime:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


class Calls:
    """Jobs that record each (job, slot) they run; ``failing`` names slots that raise."""

    def __init__(self, failing: set[datetime] | None = None) -> None:
        self.ran: list[tuple[str, datetime]] = []
        self.failing = failing or set()

    def job(self, name: str, expression: str | timedelta) -> Job:
        trigger = every(expression) if isinstance(expression, timedelta) else cron(expression)

        async def run(slot: datetime) -> None:
            self.ran.append((name, slot))
            if slot in self.failing:
                raise RuntimeError("provider down")

        return Job(name, trigger, run)

    def jobs(self) -> list[Job]:
        return [self.job("quarter", QUARTER), self.job("daily", "0 3 * * *"), self.job("weekly", "0 4 * * sun")]


async def _slots(pool: asyncpg.Pool) -> list[tuple[str, datetime]]:
    rows = await pool.fetch("SELECT job, slot FROM scheduler_slots ORDER BY job, slot")
    return [(r["job"], r["slot"]) for r in rows]


async def test_two_clocks_fire_each_slot_once_across_the_daily_and_the_weekly_slot(
    fresh_pool: asyncpg.Pool,
) -> None:
    time = FakeTime(SATURDAY)
    calls = Calls()
    clocks = [Clock(fresh_pool, calls.jobs(), now=time, name=name) for name in ("a", "b")]

    fired = []
    while time.now <= at(6, 4, 10):
        for found in await asyncio.gather(*(clock.tick() for clock in clocks)):
            fired += found
        time.now += timedelta(minutes=5)

    quarters = [("quarter", at(5, 2, 45) + n * QUARTER) for n in range(102)]  # 02:45 Saturday … 04:00 Sunday
    # A first tick fires each job's latest slot, unless another clock already did.
    daily = [("daily", at(4, 3)), ("daily", at(5, 3)), ("daily", at(6, 3))]
    weekly = [("weekly", datetime(2029, 12, 30, 4, tzinfo=UTC)), ("weekly", at(6, 4))]
    expected = sorted(daily + quarters + weekly)
    assert quarters[-1] == ("quarter", at(6, 4))
    assert sorted(calls.ran) == expected
    assert sorted((f.job, f.slot) for f in fired) == expected
    assert await _slots(fresh_pool) == expected
    assert await fresh_pool.fetchval("SELECT count(*) FROM scheduler_slots WHERE outcome <> 'ok'") == 0


async def test_a_restart_after_downtime_fires_only_the_latest_missed_slot_and_never_one_already_run(
    fresh_pool: asyncpg.Pool,
) -> None:
    time = FakeTime(at(7, 2))  # Monday
    calls = Calls()
    await Clock(fresh_pool, calls.jobs(), now=time, name="before").tick()

    time.now = at(10, 10, 7)  # Thursday: three daily slots and hundreds of quarters went by
    restarted = Clock(fresh_pool, calls.jobs(), now=time, name="after")
    await restarted.tick()
    time.now = at(10, 10, 8)
    await restarted.tick()
    # Restarted again inside the same slots: nothing is due that has not run.
    assert await Clock(fresh_pool, calls.jobs(), now=time, name="again").tick() == []

    assert sorted(calls.ran) == [
        ("daily", at(6, 3)),
        ("daily", at(10, 3)),
        ("quarter", at(7, 2)),
        ("quarter", at(10, 10)),
        ("weekly", at(6, 4)),
    ]
    assert await _slots(fresh_pool) == sorted(calls.ran)


async def test_a_failing_job_records_its_error_and_its_next_slot_still_fires(fresh_pool: asyncpg.Pool) -> None:
    time = FakeTime(at(7, 3))
    calls = Calls(failing={at(7, 3)})
    clock = Clock(fresh_pool, [calls.job("daily", "0 3 * * *")], now=time, name="a")

    [failed] = await clock.tick()
    time.now = at(8, 3)
    [succeeded] = await clock.tick()

    assert (failed.slot, failed.error) == (at(7, 3), "RuntimeError: provider down")
    assert (succeeded.slot, succeeded.error) == (at(8, 3), None)
    rows = await fresh_pool.fetch("SELECT slot, outcome, error, finished_at FROM scheduler_slots ORDER BY slot")
    assert [(r["slot"], r["outcome"], r["error"]) for r in rows] == [
        (at(7, 3), "error", "RuntimeError: provider down"),
        (at(8, 3), "ok", None),
    ]
    async with fresh_pool.acquire() as conn:
        [latest] = await schedule.latest(conn)
    assert (latest.job, latest.slot, latest.outcome, latest.claimed_by) == ("daily", at(8, 3), "ok", "a")


async def test_run_fires_a_slot_once_sleeps_until_the_next_and_fires_that(fresh_pool: asyncpg.Pool) -> None:
    time = FakeTime(at(7, 3) + timedelta(seconds=10))
    calls = Calls()
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        await asyncio.sleep(0.001)

    async def looped() -> bool:
        return len(sleeps) >= 5

    async def fired_twice() -> bool:
        return len(calls.ran) == 2

    clock = Clock(fresh_pool, [calls.job("reconcile", timedelta(seconds=30))], now=time, sleep=sleep)
    running = asyncio.create_task(clock.run())
    try:
        await eventually(looped, what="five turns of the loop")
        assert calls.ran == [("reconcile", at(7, 3))]
        assert set(sleeps) == {20 + OVERSLEEP}

        time.now = at(7, 3) + timedelta(seconds=30)
        await eventually(fired_twice, what="the next slot")
    finally:
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
    assert calls.ran == [("reconcile", at(7, 3)), ("reconcile", at(7, 3) + timedelta(seconds=30))]


async def test_a_clock_sleeps_until_the_next_slot_but_never_longer_than_its_cap(fresh_pool: asyncpg.Pool) -> None:
    clock = Clock(fresh_pool, Calls().jobs(), now=FakeTime(at(5, 2, 59) + timedelta(seconds=50)))
    assert [clock.seconds_to_next(job) for job in clock.jobs] == [10 + OVERSLEEP, 10 + OVERSLEEP, MAX_SLEEP]


async def test_exclusive_blocks_run_one_at_a_time_even_when_the_pool_is_small(fresh_db: str) -> None:
    # Two connections: a waiter that held one would leave the holder none for its work.
    pool = await create_pool(fresh_db, max_size=2)
    events: list[str] = []

    async def sweep(name: str) -> None:
        async with schedule.exclusive(pool, "sweeps", poll=0.01):
            events.append(f"{name} in")
            async with pool.acquire() as conn:
                await conn.execute("SELECT pg_sleep(0.05)")
            events.append(f"{name} out")

    try:
        await asyncio.wait_for(asyncio.gather(sweep("a"), sweep("b"), sweep("c")), timeout=10)
    finally:
        await pool.close()
    assert sorted(events) == sorted(f"{n} {w}" for n in "abc" for w in ("in", "out"))
    assert all(events[i].split()[0] == events[i + 1].split()[0] for i in range(0, 6, 2))


@pytest.mark.parametrize(
    ("expression", "now", "latest"),
    [
        ("0 3 * * *", at(7, 3), at(7, 3)),  # a slot counts at its own instant
        ("0 3 * * *", at(7, 2, 59), at(6, 3)),
        ("0 3 * * mon-fri", at(7, 1), at(4, 3)),  # Monday night: Friday's
        ("*/5 9 * * *", at(7, 15), at(7, 9, 55)),
        ("0 4 * * sun", SATURDAY, datetime(2029, 12, 30, 4, tzinfo=UTC)),
        ("0 0 29 2 *", SATURDAY, None),  # 2028's was more than LOOKBACK_LIMIT ago
    ],
)
def test_the_latest_slot_at_or_before_now(expression: str, now: datetime, latest: datetime | None) -> None:
    assert previous_fire_time(cron(expression), now) == latest


def test_interval_slots_are_the_same_in_every_process() -> None:
    # Counted from the epoch, not from when the process started.
    assert previous_fire_time(every(QUARTER), at(7, 3, 14)) == at(7, 3)
    assert previous_fire_time(every(timedelta(seconds=30)), at(7, 3, 0) + timedelta(seconds=59)) == at(
        7, 3
    ) + timedelta(seconds=30)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DAILY_SYNC_CRON", "every day at 3"),
        ("DAILY_SYNC_CRON", "0 3 * *"),
        ("CLEANUP_CRON", "61 4 * * sun"),
        ("REPORTS_CRON", "0 6 * * 1"),  # cron's Monday is APScheduler 3's Tuesday
        ("REPORTS_CRON", "0 6 * * */2"),
        ("AGGREGATE_CRON", "0 5 30 2 *"),  # parses, never fires
        ("WHOOP_SYNC_CRON", "0 14 * * xyz"),
    ],
)
def test_settings_reject_a_cron_expression_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingError) as caught:
        PipelineSettings.from_env({variable: value})
    assert caught.value.name == variable
    assert str(caught.value).startswith(f"{variable}: expected a five-field crontab expression")
    assert repr(value) in str(caught.value)


def test_settings_accept_named_weekdays_and_default_to_the_documented_schedule() -> None:
    assert PipelineSettings.from_env({"CLEANUP_CRON": "30 4 * * sat,sun"}).cleanup_cron == "30 4 * * sat,sun"
    defaults = PipelineSettings.from_env({})
    assert (defaults.daily_sync_cron, defaults.cleanup_cron, defaults.reports_cron) == (
        "0 3 * * *",
        "0 4 * * sun",
        "0 6 * * mon",
    )
    assert defaults.retention_days == 90
    with pytest.raises(SettingError, match="RETENTION_DAYS: expected an integer >= 31"):
        PipelineSettings.from_env({"RETENTION_DAYS": "7"})
