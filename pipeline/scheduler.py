"""The clock: scheduled jobs that fire once per slot, however many clock processes run.

A job's slots are its trigger's fire times; APScheduler 3's triggers compute them, so nothing
here parses cron.  For each job, a clock finds the latest slot at or before now.  If it has not
seen that slot yet, it claims the slot in Postgres (db/schedule.py), and runs the job only when
the claim won.  Missed slots coalesce: after downtime only the latest one runs.  On its first
tick a clock fires the latest slot unless another clock already has, so a restart neither
replays a backlog nor skips the day's 03:00 sync.

Run by ``carebeacon clock`` (two for failover are safe) and inside ``carebeacon up``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from db import schedule

log = logging.getLogger(__name__)

Now = Callable[[], datetime]
Sleep = Callable[[float], Awaitable[None]]

# Interval slots count from here, so every process computes the same ones (APScheduler's
# default start, "now + interval", differs per process and per restart).
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The longest a clock sleeps between looks: bounds the drift of the wall clock (NTP steps, a
# suspended laptop) against asyncio's monotonic timer, and the retry delay after a failed claim.
MAX_SLEEP = 30.0
# Woken a hair early, a clock would find nothing due and spin until the slot; so it sleeps past it.
OVERSLEEP = 0.05
# How far back a first tick looks for a trigger's latest slot (a yearly job's, at worst).
LOOKBACK_LIMIT = timedelta(days=400)


@dataclass(frozen=True, slots=True)
class Job:
    """``func`` gets the slot it runs for, not the time it starts."""

    name: str
    trigger: BaseTrigger
    func: Callable[[datetime], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Fired:
    """A slot this process claimed and ran; ``error`` None means the job succeeded."""

    job: str
    slot: datetime
    error: str | None


def cron(expression: str) -> BaseTrigger:
    """A trigger for a five-field crontab expression, in UTC (PipelineSettings validated it)."""
    return CronTrigger.from_crontab(expression, timezone=UTC)


def every(period: timedelta) -> BaseTrigger:
    """A trigger every ``period``, on a grid counted from the epoch."""
    return IntervalTrigger(seconds=period.total_seconds(), start_date=EPOCH, timezone=UTC)


def next_fire_time(trigger: BaseTrigger, now: datetime) -> datetime | None:
    """The trigger's first fire time strictly after ``now``; None when it never fires again."""
    found: datetime | None = trigger.get_next_fire_time(None, now + timedelta(microseconds=1))
    return found


def previous_fire_time(trigger: BaseTrigger, now: datetime) -> datetime | None:
    """The trigger's latest fire time at or before ``now``; None when there is none in
    ``LOOKBACK_LIMIT``.

    APScheduler 3 only looks forward, so this steps forward from ``now − span``, with the span
    starting at the trigger's own period and doubling until a fire time falls inside: one or two
    steps for a 30-second trigger, a handful for a weekly one.
    """
    upcoming: datetime | None = trigger.get_next_fire_time(None, now)
    if upcoming == now:
        return now
    after = next_fire_time(trigger, upcoming) if upcoming is not None else None
    span = after - upcoming if after is not None and upcoming is not None else timedelta(days=1)
    while span <= 2 * LOOKBACK_LIMIT:
        latest = None
        fire: datetime | None = trigger.get_next_fire_time(None, max(now - span, EPOCH))
        while fire is not None and fire <= now:
            latest, fire = fire, next_fire_time(trigger, fire)
        if latest is not None:
            return latest if now - latest <= LOOKBACK_LIMIT else None
        span *= 2
    return None


def fires_at(trigger: BaseTrigger, moment: datetime) -> bool:
    """Whether ``moment`` is one of the trigger's fire times."""
    found: datetime | None = trigger.get_next_fire_time(None, moment)
    return found == moment


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Clock:
    """Fires ``jobs`` on their slots.  ``now`` and ``sleep`` are injected so a test can move time."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        jobs: Sequence[Job],
        *,
        now: Now = _utcnow,
        sleep: Sleep = asyncio.sleep,
        name: str | None = None,
    ) -> None:
        names = [job.name for job in jobs]
        if len(set(names)) != len(names):
            raise ValueError(f"job names must be unique: {names}")
        self.pool = pool
        self.jobs = tuple(jobs)
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self._now = now
        self._sleep = sleep
        # The latest slot of each job that this process has claimed, or seen claimed elsewhere.
        self._seen: dict[str, datetime] = {}

    async def tick(self) -> list[Fired]:
        """Fire every job that has a new slot, side by side, and wait for them.  Returns the
        slots this process ran; a slot another clock claimed first is not among them."""
        fired = await asyncio.gather(*(self._fire(job) for job in self.jobs))
        return [f for f in fired if f is not None]

    async def run(self) -> None:
        """Fire slots until cancelled.  Each job has its own loop, so a long cleanup never
        holds up the 30-second reconciler."""
        async with asyncio.TaskGroup() as group:
            for job in self.jobs:
                group.create_task(self._loop(job), name=f"clock {job.name}")

    def seconds_to_next(self, job: Job) -> float:
        """How long the job's loop sleeps: until its next slot, at most ``MAX_SLEEP``."""
        now = self._now()
        upcoming = next_fire_time(job.trigger, now)
        if upcoming is None:
            return MAX_SLEEP
        return min((upcoming - now).total_seconds() + OVERSLEEP, MAX_SLEEP)

    async def _loop(self, job: Job) -> None:
        while True:
            try:
                await self._fire(job)
            except Exception:
                # Postgres away: the slot was not claimed, so the next look tries it again.
                log.exception("clock: could not claim or record %s; retrying", job.name)
            await self._sleep(self.seconds_to_next(job))

    async def _fire(self, job: Job) -> Fired | None:
        now = self._now()
        slot = previous_fire_time(job.trigger, now)
        seen = self._seen.get(job.name)
        if slot is None or (seen is not None and slot <= seen):
            return None
        async with self.pool.acquire() as conn:
            won = await schedule.claim(conn, job.name, slot, self.name, now)
        self._seen[job.name] = slot
        if not won:
            log.debug("clock: %s %s was claimed by another clock", job.name, slot.isoformat())
            return None
        error = None
        try:
            await job.func(slot)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.exception("clock: %s %s failed", job.name, slot.isoformat())
        async with self.pool.acquire() as conn:
            await schedule.finish(conn, job.name, slot, self._now(), error)
        # Jobs log their own results; a line per reconciler pass, every 30 s, would bury them.
        log.debug("clock: %s %s done", job.name, slot.isoformat())
        return Fired(job.name, slot, error)
