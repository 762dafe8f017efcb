"""The simulator: a provider that needs no network and gives the same data every time.

Each day of the window yields one reading per daily metric, drawn from a generator seeded
with (seed, day, metric), so a re-sync returns identical values and the upsert writes
nothing.  Today's activity totals grow with the hour, like a real tracker's, so a later sync
of the same day updates them in place.  With ``cgm`` on (or a glucose scenario), glucose
arrives every 5 minutes with a daily rhythm.

Settings (``connections.settings``):

* ``seed``: any string; the same seed gives the same data.
* ``scenarios``: names from SCENARIOS; each event lands in the most recent days of the window.
* ``anomalies``: explicit overrides, ``[{"metric": "resting_heart_rate", "value": 118, "days_ago": 0}]``.
* ``cgm``: true to stream 5-minute glucose.

It issues and rotates tokens like an OAuth provider, so refresh and sealing run for real.
"""

from __future__ import annotations

import math
import random
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from db.metrics import Reading
from pipeline.errors import PermanentSyncError
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
    "body_temperature": Profile("°C", 36.6, 0.15, 35.8, 37.4, digits=2),
}

# Each scenario overrides daily values (metric, days ago, value) and may add a glucose dip.
SCENARIOS: dict[str, tuple[tuple[str, int, float], ...]] = {
    "healthy": (),
    "fever": (("body_temperature", 0, 38.6),),
    "tachycardia": (("resting_heart_rate", 0, 118),),
    "hrv_drop": (("hrv_rmssd", 2, 14.0),),
    "hypoglycaemia": (),
}
# The hypoglycaemia scenario: glucose at 48 mg/dL for 40 minutes, from 03:00 UTC one day ago.
HYPO_DAYS_AGO, HYPO_START, HYPO_MINUTES, HYPO_VALUE = 1, time(3, tzinfo=UTC), 40, 48.0
CGM_STEP = timedelta(minutes=5)

TOKEN_LIFETIME = timedelta(hours=1)
# Daily readings land at 07:00 UTC: a morning summary of the previous night and the day so far.
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
    metrics = frozenset(PROFILES) | {"glucose"}

    async def refresh(self, tokens: dict[str, Any]) -> dict[str, Any]:
        return issue_tokens()

    async def fetch(self, tokens: dict[str, Any], window: Window, settings: dict[str, Any]) -> AsyncIterator[Reading]:
        seed = str(settings.get("seed", "default"))
        scenarios = settings.get("scenarios", [])
        unknown = set(scenarios) - set(SCENARIOS)
        if unknown:
            raise PermanentSyncError(f"unknown simulator scenario(s): {', '.join(sorted(unknown))}")
        injected = {(metric, ago): value for name in scenarios for metric, ago, value in SCENARIOS[name]}
        injected |= {(a["metric"], int(a.get("days_ago", 0))): float(a["value"]) for a in settings.get("anomalies", [])}
        cgm = bool(settings.get("cgm")) or "hypoglycaemia" in scenarios
        today = window.end.astimezone(UTC).date()
        day = window.start.astimezone(UTC).date()
        while day <= today:
            recorded_at = datetime.combine(day, READING_TIME)
            if window.start <= recorded_at <= window.end:
                for metric, profile in PROFILES.items():
                    override = injected.get((metric, (today - day).days))
                    value = override if override is not None else _value(seed, day, metric, profile, window.end)
                    yield Reading(metric, recorded_at, value, profile.unit)
            if cgm:
                hypo = "hypoglycaemia" in scenarios and (today - day).days == HYPO_DAYS_AGO
                for reading in _glucose_day(seed, day, hypo):
                    if window.start <= reading.recorded_at <= window.end:
                        yield reading
            day += timedelta(days=1)


def _value(seed: str, day: date, metric: str, profile: Profile, now: datetime) -> float:
    rng = random.Random(f"{seed}:{day.isoformat()}:{metric}")
    value = min(profile.high, max(profile.low, rng.gauss(profile.mean, profile.spread)))
    if profile.cumulative and day == now.date():
        # Today's total so far: grows through the day, final once the day is over.
        value *= min(1.0, (now - datetime.combine(day, time(0, tzinfo=UTC))) / timedelta(days=1))
    return round(value, profile.digits)


def _glucose_day(seed: str, day: date, hypo: bool) -> Iterator[Reading]:
    """288 readings: a fasting trough at night, peaks after meals, sensor noise; kept in 70-180."""
    rng = random.Random(f"{seed}:{day.isoformat()}:glucose")
    start = datetime.combine(day, time(0, tzinfo=UTC))
    dip_start = datetime.combine(day, HYPO_START)
    for step in range(288):
        at = start + step * CGM_STEP
        hour = step / 12
        value = 115 + 25 * math.sin((hour - 9) / 24 * 2 * math.pi) + rng.gauss(0, 6)
        value = min(175.0, max(75.0, value))
        if hypo and dip_start <= at < dip_start + timedelta(minutes=HYPO_MINUTES):
            value = HYPO_VALUE
        yield Reading("glucose", at, round(value), "mg/dL")
