"""Settings of webhook delivery: the retry schedule, auto-disable thresholds, the SSRF policy."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from datetime import timedelta

from channels.destinations import DestinationPolicy
from db import env as envlib

# Svix's schedule, shortened to five retries: about 2.6 hours in all.
DEFAULT_SCHEDULE = (5.0, 30.0, 300.0, 1800.0, 7200.0)
SCHEDULE_EXPECTED = "1 to 10 comma-separated delays in seconds, such as 5,30,300,1800,7200"


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """``schedule[i]`` is the delay before retry i + 1; its length is the number of retries."""

    schedule: tuple[float, ...] = DEFAULT_SCHEDULE
    disable_after_failures: int = 50
    disable_after: timedelta = timedelta(days=5)
    policy: DestinationPolicy = DestinationPolicy()
    timeout: float = 10.0
    grace: timedelta = timedelta(hours=24)
    # Deliveries one endpoint may have in flight: a slow receiver holds at most this many of the
    # webhook workers' threads, and the other endpoints keep theirs.
    max_in_flight: int = 3

    @classmethod
    def from_env(cls, env: envlib.Env) -> WebhookSettings:
        """Raises SettingError naming the variable."""
        return cls(
            schedule=_schedule(env, "WEBHOOK_RETRY_SCHEDULE"),
            disable_after_failures=envlib.integer(env, "WEBHOOK_DISABLE_AFTER_FAILURES", 50, minimum=1),
            disable_after=timedelta(hours=envlib.integer(env, "WEBHOOK_DISABLE_AFTER_HOURS", 120, minimum=1)),
            policy=DestinationPolicy.from_env(env),
            max_in_flight=envlib.integer(env, "WEBHOOK_MAX_IN_FLIGHT", 3, minimum=1, maximum=100),
        )


def current() -> WebhookSettings:
    """The process's settings, read per use like the channels' ``default_transport``: the
    runtime does not carry them (yet), and reading a few variables costs microseconds."""
    return WebhookSettings.from_env(os.environ)


def _schedule(env: envlib.Env, name: str) -> tuple[float, ...]:
    raw = envlib.text(env, name)
    if raw is None:
        return DEFAULT_SCHEDULE
    try:
        delays = tuple(float(part) for part in raw.split(","))
    except ValueError:
        raise envlib.SettingError(name, SCHEDULE_EXPECTED, raw) from None
    if not 1 <= len(delays) <= 10 or not all(math.isfinite(d) and 0 <= d <= 86_400 for d in delays):
        raise envlib.SettingError(name, SCHEDULE_EXPECTED, raw)
    return delays
