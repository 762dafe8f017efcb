"""Settings of the pipeline layer: the broker, sync windows, the scheduler and the reconciler."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from db import env as envlib


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
        )
