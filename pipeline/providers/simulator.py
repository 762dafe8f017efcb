"""The simulator: a provider that needs no network and gives the same data every time.

Each day of the window yields one reading per daily metric, drawn from a generator seeded
with (seed, day, metric), so a re-sync returns identical values and the upsert writes
nothing.  Today's activity totals grow with the hour, like a real tracker's, so a later sync
of the same day updates them in place.  With ``cgm`` on (or a glucose scenario), glucose
arrives every 5 minutes with a daily rhythm.

Each morning's summary also carries sessions, with real start and end times: the night that
ended that morning, lasting exactly that morning's ``sleep_duration`` (its stage minutes add up
to it), and on every other day the previous evening's workout.  Tying them to the summary, not
to their own start, gives every 30-day window exactly 30 nights and 15 workouts, whatever the
time of day the sync runs.

Settings (``connections.settings``):

* ``seed``: any string; the same seed gives the same data.
* ``scenarios``: names from SCENARIOS; each event lands in the most recent days of the window.
* ``anomalies``: explicit overrides, ``[{"metric": "resting_heart_rate", "value": 118, "days_ago": 0}]``;
  days count back from the latest daily summary of the window (before 07:00 UTC, yesterday's).
* ``cgm``: true to stream 5-minute glucose.
* ``steady``: true for ordinary days that repeat one week.  Each metric's seven daily values are
  its usual level plus its spread times the normal distribution's quantiles at 1/8 … 7/8, in an
  order drawn from the seed, so no ordinary day stands out from its own baseline: only the
  anomalies and scenarios raise alerts, whatever the date (the demo patient's data).  Without
  it, days are drawn at random and vary like a person's, so on some dates a seed's own data
  trips a personal-baseline rule.
* ``pace_ms``: a pause after each day, so a sync takes long enough to interrupt in a drill.

It issues and rotates tokens like an OAuth provider, so refresh and sealing run for real.
"""

from __future__ import annotations

import asyncio
import math
import random
import secrets
import statistics
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from db.metrics import Reading
from db.sessions import Session
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

# Each scenario's overrides of daily values: (metric, days ago, value).  The others act below.
SCENARIOS: dict[str, tuple[tuple[str, int, float], ...]] = {
    "healthy": (),
    "fever": (("body_temperature", 0, 38.6),),
    "tachycardia": (("resting_heart_rate", 0, 118),),
    "hrv_drop": (("hrv_rmssd", 2, 14.0),),
    "hypoglycaemia": (),
    "weight_gain": (),
    "missing_days": (),
    "bad_values": (),
}
# The weight_gain scenario: a daily weight that holds steady, then rises 2.4 kg over the last
# three days, 1.5 kg of it overnight (fluid retention in heart failure).
WEIGHT_UNIT, WEIGHT_BASE = "kg", 78.0
WEIGHT_GAIN = {2: 78.4, 1: 78.9, 0: 80.4}
# The missing_days scenario: nothing at all (no readings, no sessions) 2 to 4 days ago.
MISSING_DAYS = frozenset({2, 3, 4})
# The bad_values scenario: today's summary also carries readings no body produces, which the
# sync must skip and count while it keeps the rest.
BAD_VALUES = (("resting_heart_rate", -5.0), ("spo2", 140.0), ("body_temperature", math.nan))
# The hypoglycaemia scenario: glucose at 48 mg/dL for 40 minutes, from 03:00 UTC one day ago.
HYPO_DAYS_AGO, HYPO_START, HYPO_MINUTES, HYPO_VALUE = 1, time(3, tzinfo=UTC), 40, 48.0
CGM_STEP = timedelta(minutes=5)

TOKEN_LIFETIME = timedelta(hours=1)
# Daily readings land at 07:00 UTC: a morning summary of the previous night and the day so far.
READING_TIME = time(7, tzinfo=UTC)
# A night ends between 06:00 and 06:55, before the summary that reports it; a workout starts
# between 17:00 and 19:30.
WAKE_TIME, WAKE_SPREAD_MIN = time(6, tzinfo=UTC), 55
WORKOUT_TIME, WORKOUT_SPREAD_MIN = time(17, tzinfo=UTC), 150
# The share of a night awake, in deep sleep and in REM, drawn per night; light sleep is the rest.
STAGE_SHARES = {"awake_min": (0.04, 0.1), "deep_min": (0.13, 0.23), "rem_min": (0.18, 0.25)}
# Workout types, with a typical pace in metres per minute (None: no distance to report).
ACTIVITIES: dict[str, float | None] = {"running": 160.0, "cycling": 380.0, "walking": 95.0, "strength": None}


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
    metrics = frozenset(PROFILES) | {"glucose", "weight"}

    async def refresh(self, tokens: dict[str, Any]) -> dict[str, Any]:
        return issue_tokens()

    async def fetch(
        self, tokens: dict[str, Any], window: Window, settings: dict[str, Any]
    ) -> AsyncIterator[Reading | Session]:
        seed = str(settings.get("seed", "default"))
        scenarios = settings.get("scenarios", [])
        unknown = set(scenarios) - set(SCENARIOS)
        if unknown:
            raise PermanentSyncError(f"unknown simulator scenario(s): {', '.join(sorted(unknown))}")
        injected = {(metric, ago): value for name in scenarios for metric, ago, value in SCENARIOS[name]}
        injected |= {(a["metric"], int(a.get("days_ago", 0))): float(a["value"]) for a in settings.get("anomalies", [])}
        cgm = bool(settings.get("cgm")) or "hypoglycaemia" in scenarios
        steady = bool(settings.get("steady"))
        pace = float(settings.get("pace_ms", 0)) / 1000
        today = window.end.astimezone(UTC).date()
        # Days are counted back from the latest summary the window holds, so an event "0 days
        # ago" is always in the sync.
        latest = latest_summary(window.end)
        day = window.start.astimezone(UTC).date()
        while day <= today:
            recorded_at = datetime.combine(day, READING_TIME)
            ago = (latest - day).days
            if "missing_days" in scenarios and ago in MISSING_DAYS:
                day += timedelta(days=1)
                continue
            if window.start <= recorded_at <= window.end:
                daily: dict[str, float] = {}
                for metric, profile in PROFILES.items():
                    override = injected.get((metric, ago))
                    value = override if override is not None else _value(seed, day, metric, profile, window.end, steady)
                    daily[metric] = value
                    yield Reading(metric, recorded_at, value, profile.unit)
                if "weight_gain" in scenarios:
                    yield Reading("weight", recorded_at, WEIGHT_GAIN.get(ago, WEIGHT_BASE), WEIGHT_UNIT)
                if "bad_values" in scenarios and ago == 0:
                    for metric, value in BAD_VALUES:
                        yield Reading(metric, recorded_at, value, PROFILES[metric].unit)
                night = _night(seed, day, daily["sleep_duration"], window.end, steady)
                for session in (night, _workout(seed, day)):
                    # Only an injected sleep_duration can run a night past the summary: a tracker
                    # reports a session once it has ended.
                    if session is not None and session.ended_at <= window.end:
                        yield session
            if cgm:
                hypo = "hypoglycaemia" in scenarios and ago == HYPO_DAYS_AGO
                for reading in _glucose_day(seed, day, hypo):
                    if window.start <= reading.recorded_at <= window.end:
                        yield reading
            if pace:
                await asyncio.sleep(pace)
            day += timedelta(days=1)


def latest_summary(end: datetime) -> date:
    """The day of the latest daily summary at or before ``end``: before READING_TIME, yesterday."""
    return (end.astimezone(UTC) - timedelta(hours=READING_TIME.hour, minutes=READING_TIME.minute)).date()


# A steady week's deviations, in spreads: the normal quantiles at 1/8 … 7/8.  Over whole weeks
# their median is 0 and their median absolute deviation 0.67, so a day's modified z is at most
# 0.6745 × 1.15 / 0.67 ≈ 1.15; and no day's resting heart rate is 4 bpm over the median (3.45).
STEADY_WEEK = tuple(statistics.NormalDist().inv_cdf((i + 1) / 8) for i in range(7))


def _value(seed: str, day: date, metric: str, profile: Profile, now: datetime, steady: bool = False) -> float:
    if steady:
        order = random.Random(f"{seed}:{metric}:week").sample(STEADY_WEEK, len(STEADY_WEEK))
        drawn = profile.mean + profile.spread * order[day.weekday()]
    else:
        drawn = random.Random(f"{seed}:{day.isoformat()}:{metric}").gauss(profile.mean, profile.spread)
    value = min(profile.high, max(profile.low, drawn))
    if profile.cumulative and day == now.date():
        # Today's total so far: grows through the day, final once the day is over.
        value *= min(1.0, (now - datetime.combine(day, time(0, tzinfo=UTC))) / timedelta(days=1))
    return round(value, profile.digits)


def _night(seed: str, day: date, minutes: float, now: datetime, steady: bool = False) -> Session | None:
    """The night that ended on the morning of ``day``, lasting ``minutes``; None for an injected
    sleep_duration that no night could last (not between a minute and a day).

    It starts where the seed's own night does (its wake time less its sleep_duration), so an
    injected sleep_duration moves the end, not the start: the upsert updates that night in place.
    """
    if not (math.isfinite(minutes) and 1 <= round(minutes) <= 24 * 60):
        return None
    whole = round(minutes)
    rng = random.Random(f"{seed}:{day.isoformat()}:night")
    woke = datetime.combine(day, WAKE_TIME) + timedelta(minutes=rng.randint(0, WAKE_SPREAD_MIN))
    own = _value(seed, day, "sleep_duration", PROFILES["sleep_duration"], now, steady)
    started = woke - timedelta(minutes=own)
    details = {stage: round(whole * rng.uniform(low, high)) for stage, (low, high) in STAGE_SHARES.items()}
    details["light_min"] = whole - sum(details.values())
    return Session("sleep", started, started + timedelta(minutes=whole), None, details)


def _workout(seed: str, day: date) -> Session | None:
    """The workout on the evening before ``day``, on every other day (which ones depends on the seed)."""
    on = day - timedelta(days=1)
    # Strictly alternating, so any 30 consecutive days hold exactly 15 workouts.
    if (on.toordinal() + random.Random(f"{seed}:workouts").randrange(2)) % 2:
        return None
    rng = random.Random(f"{seed}:{on.isoformat()}:workout")
    started = datetime.combine(on, WORKOUT_TIME) + timedelta(minutes=rng.randint(0, WORKOUT_SPREAD_MIN))
    minutes = rng.randint(20, 75)
    activity = rng.choice(list(ACTIVITIES))
    heart_rate = rng.randint(115, 155)
    details = {
        "energy_kcal": round(minutes * rng.uniform(6, 11)),
        "avg_heart_rate_bpm": heart_rate,
        "max_heart_rate_bpm": heart_rate + rng.randint(15, 35),
    }
    pace = ACTIVITIES[activity]
    if pace is not None:
        details["distance_m"] = round(minutes * pace * rng.uniform(0.85, 1.15))
    return Session("workout", started, started + timedelta(minutes=minutes), activity, details)


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
