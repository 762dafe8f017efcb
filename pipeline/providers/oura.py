"""Oura: the Oura API v2 client (https://cloud.ouraring.com/v2/docs).

==================  ==========================================  ==============================
Collection          Oura field                                  Reading
==================  ==========================================  ==============================
daily_activity      steps, active_calories                      steps, active_energy (kcal)
sleep (long_sleep)  total/deep/rem_sleep_duration (s)           sleep_duration/deep/rem (min)
                    efficiency, lowest_heart_rate, average_hrv  sleep_efficiency, resting_heart
                                                                _rate, hrv_rmssd (ms)
daily_spo2          spo2_percentage.average                     spo2 (%)
daily_readiness     temperature_deviation                       skin_temp_deviation (°C)
heartrate           bpm (5-minute samples)                      heart_rate
sleep (any sleep)   bedtime_start/end, stage durations (s)      a sleep Session, stages in min
==================  ==========================================  ==============================

A null field yields nothing (never a 0); a field that is not a number yields NaN, so the sync
counts it as invalid instead of dropping it unseen.  When each reading is dated: daily_activity
and daily_readiness at their ``timestamp`` (the start of the user's day), a sleep at its
``bedtime_end``, SpO2 (which has no timestamp) at 12:00 UTC of its ``day``, a heart-rate sample
at its own ``timestamp``.  Every sleep period (naps too, not rests) is also a Session from
``bedtime_start`` to ``bedtime_end``.  ``daily_sleep`` is not read: it holds only scores.

Oura files daily documents under the user's local day, which we do not know, so each date query
reaches one day either side of the window; only readings inside the window are yielded.  Oura
refuses ranges over 30 days, so longer windows are read in 30-day chunks.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import aiohttp
from yarl import URL

from db import env as envlib
from db.metrics import Reading
from db.sessions import Session
from pipeline.errors import PermanentSyncError, TransientSyncError
from pipeline.providers.base import Capabilities, Window
from pipeline.providers.http import DEFAULT_TIMEOUT, JSON, OAuthApp, RestProvider, timeout_from_env
from pipeline.vocabulary import FILED_BY_DAY, UNITS

API_BASE = "https://api.ouraring.com"
TOKEN_URL = "https://api.ouraring.com/oauth/token"
AUTHORIZE_URL = "https://cloud.ouraring.com/oauth/authorize"
SCOPES = ("daily", "heartrate", "spo2")
MAX_RANGE = timedelta(days=30)

Doc = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Field:
    metric: str
    path: tuple[str, ...]
    scale: float = 1.0


def _midday(doc: Doc) -> datetime | None:
    # Noon UTC lies inside the local calendar day of every zone from UTC-11:59 to UTC+11:59.
    day = doc.get("day")
    try:
        return datetime.combine(date.fromisoformat(day), time(12, tzinfo=UTC)) if isinstance(day, str) else None
    except ValueError:
        return None


def _parse(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _at(key: str) -> Callable[[Doc], datetime | None]:
    """Dated by ``doc[key]``; by its day when the key is missing."""

    def when(doc: Doc) -> datetime | None:
        return _parse(doc[key]) if doc.get(key) is not None else _midday(doc)

    return when


@dataclass(frozen=True, slots=True)
class Collection:
    name: str
    fields: tuple[Field, ...]
    when: Callable[[Doc], datetime | None]
    by_datetime: bool = False
    # Sleep periods: each is a Session, but only the long sleep (the night) gives the nightly
    # readings; a nap's would add a second "night" to the day.
    sleeps: bool = False


MINUTES = 1 / 60
# Oura's sleep period types that are sleep; "rest" is lying still awake, "deleted" was undone.
SLEEP_TYPES = frozenset({"long_sleep", "sleep", "late_nap"})
# Session detail keys (pipeline.vocabulary.DETAILS) and the Oura fields, in seconds, behind them.
STAGES = {
    "deep_min": "deep_sleep_duration",
    "rem_min": "rem_sleep_duration",
    "light_min": "light_sleep_duration",
    "awake_min": "awake_time",
}
COLLECTIONS: dict[str, Collection] = {
    c.name: c
    for c in (
        Collection(
            "daily_activity",
            (Field("steps", ("steps",)), Field("active_energy", ("active_calories",))),
            _at("timestamp"),
        ),
        Collection(
            "sleep",
            (
                Field("sleep_duration", ("total_sleep_duration",), MINUTES),
                Field("sleep_efficiency", ("efficiency",)),
                Field("sleep_deep", ("deep_sleep_duration",), MINUTES),
                Field("sleep_rem", ("rem_sleep_duration",), MINUTES),
                Field("resting_heart_rate", ("lowest_heart_rate",)),
                Field("hrv_rmssd", ("average_hrv",)),
            ),
            _at("bedtime_end"),
            sleeps=True,
        ),
        Collection("daily_spo2", (Field("spo2", ("spo2_percentage", "average")),), _midday),
        Collection("daily_readiness", (Field("skin_temp_deviation", ("temperature_deviation",)),), _at("timestamp")),
        Collection("heartrate", (Field("heart_rate", ("bpm",)),), _at("timestamp"), by_datetime=True),
    )
}


# A webhook's ``data_type`` is a collection's name; ``daily_sleep`` (scores, not read) announces
# the night whose periods are in ``sleep``.
PUSHED = {name: name for name in COLLECTIONS} | {"daily_sleep": "sleep"}


def collections_for(data_type: str) -> frozenset[str] | None:
    """The collections a push of ``data_type`` calls for; None (all) for a type we do not map."""
    found = PUSHED.get(data_type)
    return frozenset({found}) if found is not None else None


def normalise(collection: str, doc: Doc) -> list[Reading | Session]:
    """The readings (and, for a sleep, its session) in one Oura document, in canonical units.  Pure.

    Skips null fields, rest periods and deleted sleeps, and documents with no usable date.  Only
    the long sleep gives nightly readings; naps are sessions alone.
    """
    spec = COLLECTIONS[collection]
    found: list[Reading | Session] = []
    if spec.sleeps:
        if doc.get("type") not in SLEEP_TYPES:
            return []
        session = _sleep_session(doc)
        found += [session] if session is not None else []
        if doc.get("type") != "long_sleep":
            return found
    recorded_at = spec.when(doc)
    if recorded_at is None:
        return found
    for field in spec.fields:
        raw = _dig(doc, field.path)
        if raw is not None:
            found.append(Reading(field.metric, recorded_at, _number(raw) * field.scale, UNITS[field.metric]))
    return found


def _sleep_session(doc: Doc) -> Session | None:
    started, ended = _parse(doc.get("bedtime_start")), _parse(doc.get("bedtime_end"))
    if started is None or ended is None:
        return None
    details = {key: _number(doc[field]) / 60 for key, field in STAGES.items() if doc.get(field) is not None}
    return Session("sleep", started, ended, None, details)


def _number(raw: Any) -> float:
    # Anything but a number becomes NaN, so the sync counts it invalid rather than storing it.
    return float(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) else math.nan


class Oura(RestProvider):
    id = "oura"
    display_name = "Oura"
    capabilities = Capabilities(rest_pull=True, webhook_push=False, refresh_tokens=True, max_history_days=None)
    metrics = frozenset(field.metric for c in COLLECTIONS.values() for field in c.fields)

    def __init__(
        self, oauth: OAuthApp | None = None, *, base_url: str = API_BASE, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        super().__init__(base_url, oauth, timeout=timeout)

    @classmethod
    def from_env(cls, env: envlib.Env) -> Oura:
        """OURA_CLIENT_ID and OURA_CLIENT_SECRET (or _FILE); OURA_API_BASE and OURA_TOKEN_URL point
        it elsewhere (a fake in tests); PROVIDER_TIMEOUT_SECONDS.  Raises SettingError."""
        client_id, secret = envlib.text(env, "OURA_CLIENT_ID"), envlib.secret(env, "OURA_CLIENT_SECRET")
        if (client_id is None) != (secret is None):
            missing = "OURA_CLIENT_SECRET" if secret is None else "OURA_CLIENT_ID"
            raise envlib.SettingError(missing, "both OURA_CLIENT_ID and OURA_CLIENT_SECRET, or neither")
        token_url = envlib.url(env, "OURA_TOKEN_URL", ("https", "http")) or TOKEN_URL
        oauth = OAuthApp(token_url, client_id, secret) if client_id and secret else None
        base_url = envlib.url(env, "OURA_API_BASE", ("https", "http")) or API_BASE
        return cls(oauth, base_url=base_url, timeout=timeout_from_env(env))

    def authorize_url(self, redirect_uri: str, state: str) -> str:
        """Where /connect sends the user to grant access.  Raises PermanentSyncError when unconfigured."""
        if self.oauth is None:
            raise PermanentSyncError(self.unavailable_reason or "oura is not configured")
        query = {"response_type": "code", "client_id": self.oauth.client_id, "redirect_uri": redirect_uri}
        return str(URL(AUTHORIZE_URL).with_query(query | {"state": state, "scope": " ".join(SCOPES)}))

    async def fetch(
        self, tokens: dict[str, Any], window: Window, settings: dict[str, Any]
    ) -> AsyncIterator[Reading | Session]:
        token = self.access_token(tokens)
        async with self.session() as http:
            for collection in COLLECTIONS.values():
                if window.only is not None and collection.name not in window.only:
                    continue
                for params in queries(collection, window):
                    async for doc in self._documents(http, collection.name, params, token):
                        for item in normalise(collection.name, doc):
                            if _inside(item, window):
                                yield item

    async def provider_user_id(self, tokens: dict[str, Any]) -> str:
        """The Oura user id of ``tokens`` (``/v2/usercollection/personal_info``), which webhooks
        carry.  Any token may read the id; the other fields need scopes we do not ask for."""
        return await self.account_id(tokens, "/v2/usercollection/personal_info", "id")

    async def _documents(
        self, http: aiohttp.ClientSession, collection: str, params: dict[str, str], token: str
    ) -> AsyncIterator[JSON]:
        """Every document of one query, following ``next_token`` page by page."""
        seen: set[str] = set()
        while True:
            page = await self.get_json(http, f"/v2/usercollection/{collection}", params, token)
            data = page.get("data")
            if not isinstance(data, list):
                raise TransientSyncError(f"oura answered {collection} without a data list")
            for doc in data:
                if isinstance(doc, dict):
                    yield doc
            next_token = page.get("next_token")
            if not isinstance(next_token, str) or not next_token:
                return
            if next_token in seen:  # a server that hands back a page token twice would loop forever
                raise TransientSyncError(f"oura repeated a page token on {collection}")
            seen.add(next_token)
            params = params | {"next_token": next_token}


def _inside(item: Reading | Session, window: Window) -> bool:
    """Whether ``item`` belongs to the window.  A session may end up to a day before it (providers
    file sleeps by day); a naive time goes through, for the sync's validation to count."""
    at = item.ended_at if isinstance(item, Session) else item.recorded_at
    if at.tzinfo is None:
        return True
    start = window.start - FILED_BY_DAY if isinstance(item, Session) else window.start
    return start <= at <= window.end


def queries(collection: Collection, window: Window) -> Iterator[dict[str, str]]:
    """The documented query parameters covering ``window``, one dict per chunk of at most 30 days."""
    if collection.by_datetime:
        start, end = window.start.astimezone(UTC), window.end.astimezone(UTC)
        while True:
            stop = min(start + MAX_RANGE, end)
            yield {"start_datetime": _stamp(start), "end_datetime": _stamp(stop)}
            if stop >= end:
                return
            start = stop
    first = window.start.astimezone(UTC).date() - timedelta(days=1)
    last = window.end.astimezone(UTC).date() + timedelta(days=1)
    while first <= last:
        until = min(first + MAX_RANGE - timedelta(days=1), last)  # both ends inclusive
        yield {"start_date": first.isoformat(), "end_date": until.isoformat()}
        first = until + timedelta(days=1)


def _stamp(at: datetime) -> str:
    # "Z" rather than "+00:00": a "+" left unescaped in a query string arrives as a space.
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _dig(doc: Doc, path: tuple[str, ...]) -> Any:
    found: Any = doc
    for key in path:
        if not isinstance(found, Mapping):
            return None
        found = found.get(key)
    return found
