"""Settings of the pipeline layer: the broker, sync windows, the scheduler and the reconciler."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from apscheduler.triggers.cron import CronTrigger

from db import env as envlib

CRON_EXPECTED = (
    "a five-field crontab expression that fires, such as '0 3 * * *', with days of the week as names (sun, mon-fri)"
)


@dataclass(frozen=True, slots=True)
class PipelineSettings:
    """``redis_url`` None means the embedded Redis."""

    redis_url: str | None = field(repr=False)
    first_sync_days: int = 30
    sync_overlap: timedelta = timedelta(hours=1)
    daily_lookback_days: int = 7
    sync_interval: timedelta = timedelta(minutes=15)
    reconcile_after: timedelta = timedelta(minutes=2)
    stale_after: timedelta = timedelta(minutes=10)
    delivery_lease: timedelta = timedelta(minutes=2)
    daily_sync_cron: str = "0 3 * * *"
    daily_sync_jitter: timedelta = timedelta(minutes=15)
    sync_jitter: timedelta = timedelta(minutes=2)
    whoop_sync_cron: str = "0 14 * * *"
    cgm_sync_cron: str = "*/30 * * * *"
    aggregate_cron: str = "0 5 * * *"
    cleanup_cron: str = "0 4 * * sun"
    reports_cron: str = "0 6 * * mon"
    retention_days: int = 90

    @classmethod
    def from_env(cls, env: envlib.Env) -> PipelineSettings:
        return cls(
            redis_url=envlib.url(env, "REDIS_URL", ("redis", "rediss", "unix")),
            first_sync_days=envlib.integer(env, "SYNC_FIRST_DAYS", 30, minimum=1, maximum=365),
            sync_overlap=timedelta(minutes=envlib.integer(env, "SYNC_OVERLAP_MINUTES", 60, maximum=7 * 24 * 60)),
            daily_lookback_days=envlib.integer(env, "SYNC_LOOKBACK_DAYS", 7, minimum=1, maximum=90),
            sync_interval=timedelta(minutes=envlib.integer(env, "SYNC_INTERVAL_MINUTES", 15, minimum=1)),
            reconcile_after=timedelta(seconds=envlib.integer(env, "RECONCILE_AFTER_SECONDS", 120, minimum=5)),
            stale_after=timedelta(seconds=envlib.integer(env, "SYNC_STALE_AFTER_SECONDS", 600, minimum=30)),
            # Longer than the 10 s HTTP send timeout: a shorter lease would take a slow send
            # still in flight for a dead one and send it twice.
            delivery_lease=timedelta(seconds=envlib.integer(env, "DELIVERY_LEASE_SECONDS", 120, minimum=15)),
            daily_sync_cron=_cron(env, "DAILY_SYNC_CRON", "0 3 * * *"),
            daily_sync_jitter=timedelta(minutes=envlib.integer(env, "DAILY_SYNC_JITTER_MINUTES", 15, maximum=180)),
            sync_jitter=timedelta(seconds=envlib.integer(env, "SYNC_JITTER_SECONDS", 120, maximum=900)),
            whoop_sync_cron=_cron(env, "WHOOP_SYNC_CRON", "0 14 * * *"),
            cgm_sync_cron=_cron(env, "CGM_SYNC_CRON", "*/30 * * * *"),
            aggregate_cron=_cron(env, "AGGREGATE_CRON", "0 5 * * *"),
            cleanup_cron=_cron(env, "CLEANUP_CRON", "0 4 * * sun"),
            reports_cron=_cron(env, "REPORTS_CRON", "0 6 * * mon"),
            # The daily stats' 30-day rolling average needs 30 days of readings behind it.
            retention_days=envlib.integer(env, "RETENTION_DAYS", 90, minimum=31),
        )


def _cron(env: envlib.Env, name: str, default: str) -> str:
    """A crontab expression, checked by APScheduler, which the clock uses to time the job."""
    value = envlib.text(env, name, default)
    assert value is not None
    fields = value.split()
    # APScheduler 3 numbers the days of the week from Monday = 0, cron from Sunday = 0: a number
    # would silently run the job a day late, so only names are accepted.
    if len(fields) == 5 and any(ch.isdigit() for ch in fields[4]):
        raise envlib.SettingError(name, CRON_EXPECTED, value)
    try:
        trigger = CronTrigger.from_crontab(value, timezone=UTC)
    except ValueError:
        raise envlib.SettingError(name, CRON_EXPECTED, value) from None
    # February 30th parses, and never comes.
    if trigger.get_next_fire_time(None, datetime.now(UTC)) is None:
        raise envlib.SettingError(name, CRON_EXPECTED, value)
    return value
