"""The simulator: a provider that needs no network and gives the same data every time.

Each day of the window yields one reading per metric, drawn from a generator seeded with
(seed, day, metric), so a re-sync returns identical values and the upsert writes nothing.
Today's activity totals grow with the hour, like a real tracker's, so a later sync of the
same day updates them in place.  ``settings["anomalies"]`` injects values:
``[{"metric": "resting_heart_rate", "value": 118, "days_ago": 0}]``.
It issues and rotates tokens like an OAuth provider, so refresh and sealing run for real.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from db.metrics import Reading
from pipeline.providers.base import Capabilities, Provider, Window


@dataclass(frozen=True, slots=True)
class Profile:
    unit: str
    mean: float
    spread: float
    low: float
    high: float
    digits: int = 0
    cumulative: bool = False


PROFILES: dict[str, Profile] = {
    "steps": Profile("count", 8200, 2500, 0, 40000, cumulative=True),
    "active_energy": Profile("kcal", 480, 120, 0, 3000, cumulative=True),
    "resting_heart_rate": Profile("bpm", 62, 3, 40, 100),
    "hrv_rmssd": Profile("ms", 45, 8, 10, 150, digits=1),
    "sleep_duration": Profile("min", 445, 40, 180, 720),
    "spo2": Profile("%", 97, 0.8, 92, 100, digits=1),
    "respiratory_rate": Profile("/min", 14.5, 1, 10, 22, digits=1),
}

TOKEN_LIFETIME = timedelta(hours=1)
# Readings land at 07:00 UTC: a morning summary of the previous night and the day so far.
READING_TIME = time(7, tzinfo=UTC)


def issue_tokens(now: datetime | None = None) -> dict[str, Any]:
    issued = now or datetime.now(UTC)
    return {
        "access_token": f"sim-at-{secrets.token_urlsafe(24)}",
        "refresh_token": f"sim-rt-{secrets.token_urlsafe(24)}",
        "expires_at": (issued + TOKEN_LIFETIME).isoformat(),
    }


class Simulator(Provider):
    id = "simulator"
    display_name = "Simulator"
    capabilities = Capabilities(rest_pull=True, webhook_push=False, refresh_tokens=True, max_history_days=None)
    metrics = frozenset(PROFILES)

    async def refresh(self, tokens: dict[str, Any]) -> dict[str, Any]:
        return issue_tokens()

    async def fetch(self, tokens: dict[str, Any], window: Window, settings: dict[str, Any]) -> AsyncIterator[Reading]:
        seed = str(settings.get("seed", "default"))
        injected = {(a["metric"], int(a.get("days_ago", 0))): float(a["value"]) for a in settings.get("anomalies", [])}
        today = window.end.astimezone(UTC).date()
        day = window.start.astimezone(UTC).date()
        while day <= today:
            recorded_at = datetime.combine(day, READING_TIME)
            if window.start <= recorded_at <= window.end:
                for metric, profile in PROFILES.items():
                    override = injected.get((metric, (today - day).days))
                    value = override if override is not None else _value(seed, day, metric, profile, window.end)
                    yield Reading(metric, recorded_at, value, profile.unit)
            day += timedelta(days=1)


def _value(seed: str, day: date, metric: str, profile: Profile, now: datetime) -> float:
    rng = random.Random(f"{seed}:{day.isoformat()}:{metric}")
    value = min(profile.high, max(profile.low, rng.gauss(profile.mean, profile.spread)))
    if profile.cumulative and day == now.date():
        # Today's total so far: grows through the day, final once the day is over.
        value *= min(1.0, (now - datetime.combine(day, time(0, tzinfo=UTC))) / timedelta(days=1))
    return round(value, profile.digits)
