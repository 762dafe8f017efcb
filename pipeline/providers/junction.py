"""Junction (formerly Vital): the aggregator's Data Access API, read with the team's API key.

Junction links a person's wearables (Oura, WHOOP, Garmin, FreeStyle Libre, ...) to one Junction
user and hands back their data in one format (https://docs.junction.com/api-details/junction-api).
Every request carries the team key in ``X-Vital-API-Key``; ``JUNCTION_ENVIRONMENT`` and
``JUNCTION_REGION`` pick the documented base (``*.tryvital.io``; Junction also answers on the
equivalent ``*.junction.com`` hosts, which ``JUNCTION_API_BASE`` can name).

=================================  ============================  ================================
Endpoint                           Junction field                Reading or session
=================================  ============================  ================================
/v2/summary/sleep/{user}           bedtime_start/stop, stages    a sleep Session, stages in min
(long_sleep only for readings)     total, deep, rem (s)          sleep_duration/deep/rem (min)
                                   efficiency                    sleep_efficiency (%)
                                   hr_lowest, average_hrv        resting_heart_rate, hrv_rmssd
                                   respiratory_rate              respiratory_rate (/min)
                                   temperature_delta             skin_temp_deviation (°C)
/v2/summary/activity/{user}        steps, calories_active        steps, active_energy (kcal)
/v2/timeseries/{user}/heartrate    value (bpm)                   heart_rate
/v2/timeseries/{user}/glucose      value (mmol/L or mg/dL)       glucose (mg/dL)
=================================  ============================  ================================

Recovery: Junction has no recovery score of its own; the nightly HRV, lowest heart rate,
respiratory rate and temperature deviation above are what the providers' recovery scores are
built from, and our scores use them.  Summaries are filed by ``calendar_date``, so they are
asked for from a day before the window; an activity day is dated at 12:00 UTC of that date,
which lies inside the local day of every zone from UTC-11:59 to UTC+11:59.  Timeseries come
``/grouped`` by source, a page at a time, chained by ``next_cursor``.

A null field yields nothing; a field that is not a number yields NaN, so the sync counts it
invalid; a sample without a usable time is skipped.

LibreView's times are floating: the wearer's wall clock, sent with a ``+00:00`` that Junction
says to ignore (https://docs.junction.com/wearables/providers/timestamps-and-time-zones).  They
are read in the connection's ``timezone`` setting (UTC when it has none); every other source's
times are UTC.

Errors: the key is the team's, not the user's.  Junction refreshes each wearable's OAuth tokens
itself and reports a broken link with a ``provider.connection.error`` push; the user relinks
through Junction Link.  So a 401 or 403 here means our API key was refused: permanent, for the
operator to fix (never a refresh, never a disconnect of every user over one key).  Junction
sets no per-customer rate limit but may shed load with 429 or 503
(https://docs.junction.com/api-details/rate_limiting): both are transient.

Pushes are Svix-signed, that is Standard Webhooks with ``svix-`` header names
(https://docs.svix.com/receiving/verifying-payloads/how-manual): ``channels.signing`` verifies
them.  Events are ``{event_type, user_id, client_user_id, team_id, data}``
(https://docs.junction.com/webhooks/event-structure).
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from datetime import time as clock
from typing import Any, ClassVar
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import aiohttp

from channels import signing
from db import env as envlib
from db.metrics import Reading
from db.sessions import Session
from pipeline.errors import PermanentSyncError, TransientSyncError
from pipeline.providers.base import Capabilities, Provider, Window
from pipeline.providers.dexcom import MG_DL_PER_MMOL_L
from pipeline.providers.http import DEFAULT_TIMEOUT, HEADERS, JSON, check, read_json, timeout_from_env, translate_errors
from pipeline.providers.push import BadSignature, MalformedPush, PushEvent, json_object
from pipeline.vocabulary import FILED_BY_DAY, UNITS

BASES = {
    ("production", "us"): "https://api.tryvital.io",
    ("production", "eu"): "https://api.eu.tryvital.io",
    ("sandbox", "us"): "https://api.sandbox.tryvital.io",
    ("sandbox", "eu"): "https://api.sandbox.eu.tryvital.io",
}
KEY_HEADER = "X-Vital-API-Key"
# Junction's slugs for LibreView: through a LibreView practice, and (older) the patient's account.
LIBRE_SOURCES = frozenset({"freestyle_libre", "abbott_libreview"})
# The ``libre`` provider (pipeline/providers/libre.py): pushes about LibreView data are its own.
LIBRE_ID, LIBRE_RESOURCES = "libre", ("glucose",)
# What LibreView gives, in floating time, and how far a wall clock can be from UTC (UTC-12..+14).
FLOATING_RESOURCES, FLOATING_REACH = frozenset({"glucose"}), timedelta(hours=14)
MINUTES = 1 / 60  # Junction durations are seconds
# Session detail keys (pipeline.vocabulary.DETAILS) and the sleep fields, in seconds, behind them.
STAGES = {"deep_min": "deep", "rem_min": "rem", "light_min": "light", "awake_min": "awake"}
SLEEP_FIELDS = {
    "sleep_duration": ("total", MINUTES),
    "sleep_deep": ("deep", MINUTES),
    "sleep_rem": ("rem", MINUTES),
    "sleep_efficiency": ("efficiency", 1.0),
    "resting_heart_rate": ("hr_lowest", 1.0),
    "hrv_rmssd": ("average_hrv", 1.0),
    "respiratory_rate": ("respiratory_rate", 1.0),
    "skin_temp_deviation": ("temperature_delta", 1.0),
}
ACTIVITY_FIELDS = {"steps": ("steps", 1.0), "active_energy": ("calories_active", 1.0)}
TIMESERIES = {"heartrate": "heart_rate", "glucose": "glucose"}
SVIX_HEADERS = ("svix-id", "svix-timestamp", "svix-signature")
# Data events name a resource that changed; the rest (provider.connection.*) concern the link.
DATA_EVENTS = ("daily.data.", "historical.data.")

Doc = Mapping[str, Any]


# -- normalising: pure --------------------------------------------------------------------------


def normalise_sleep(doc: Doc) -> list[Reading | Session]:
    """One sleep summary: a Session (naps too), and for a ``long_sleep`` the night's readings,
    dated at ``bedtime_stop``.  An ``indeterminate`` sleep is still being recorded: nothing."""
    started, ended = _parse(doc.get("bedtime_start")), _parse(doc.get("bedtime_stop"))
    if started is None or ended is None or doc.get("type") == "indeterminate":
        return []
    details = {key: _number(doc[field]) * MINUTES for key, field in STAGES.items() if doc.get(field) is not None}
    found: list[Reading | Session] = [Session("sleep", started, ended, None, details)]
    if doc.get("type") != "long_sleep":  # a nap is a session, not a second night
        return found
    return found + _readings(ended, doc, SLEEP_FIELDS)


def normalise_activity(doc: Doc) -> list[Reading | Session]:
    """One daily activity summary, dated at 12:00 UTC of its ``calendar_date``."""
    try:
        day = date.fromisoformat(str(doc.get("calendar_date")))
    except ValueError:
        return []
    return _readings(datetime.combine(day, clock(12, tzinfo=UTC)), doc, ACTIVITY_FIELDS)


def normalise_sample(resource: str, sample: Doc, floating: tzinfo | None = None) -> list[Reading]:
    """One timeseries sample (``heartrate`` or ``glucose``) in canonical units; glucose in
    mmol/L is converted to mg/dL, a unit we do not know becomes NaN.  With ``floating``, the
    sample's time is a wall-clock time in that zone (LibreView's), whatever offset it shows."""
    when = _parse(sample.get("timestamp"))
    if when is not None and floating is not None:
        when = when.replace(tzinfo=floating)
    metric = TIMESERIES[resource]
    if when is None or sample.get("value") is None:
        return []
    value, unit = _number(sample["value"]), sample.get("unit")
    if metric == "glucose" and unit != "mg/dL":
        value = value * MG_DL_PER_MMOL_L if unit == "mmol/L" else math.nan
    return [Reading(metric, when, value, UNITS[metric])]


def _readings(when: datetime, doc: Doc, fields: dict[str, tuple[str, float]]) -> list[Reading | Session]:
    return [
        Reading(metric, when, _number(doc[key]) * scale, UNITS[metric])
        for metric, (key, scale) in fields.items()
        if doc.get(key) is not None
    ]


def _number(raw: Any) -> float:
    return float(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) else math.nan


def _parse(value: Any) -> datetime | None:
    """An aware time; Junction's times are UTC, so one without an offset is taken as UTC."""
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return parsed if parsed is None or parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _floating_zone(settings: Mapping[str, Any]) -> tzinfo:
    """The zone LibreView's floating times are read in: the connection's ``timezone`` (IANA),
    else UTC.  Raises PermanentSyncError for a name that is not a zone."""
    name = settings.get("timezone")
    if name is None:
        return UTC
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        raise PermanentSyncError("junction: the connection's timezone is not an IANA zone name") from None


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")  # "Z": a "+" would need escaping


def _inside(item: Reading | Session, window: Window) -> bool:
    if isinstance(item, Session):
        return window.start - FILED_BY_DAY <= item.ended_at <= window.end
    return window.start <= item.recorded_at <= window.end


# -- the client ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JunctionLink:
    """A Junction user, and where that person links their devices (the URL holds a one-time token)."""

    user_id: str
    url: str = field(repr=False)


class Junction(Provider):
    """Everything a Junction user's linked sources give; ``sources`` narrows it to some."""

    id: ClassVar[str] = "junction"
    display_name: ClassVar[str] = "Junction"
    capabilities = Capabilities(rest_pull=True, webhook_push=True, refresh_tokens=False, max_history_days=None)
    metrics: ClassVar[frozenset[str]] = frozenset({*SLEEP_FIELDS, *ACTIVITY_FIELDS, *TIMESERIES.values()})
    sources: ClassVar[frozenset[str] | None] = None
    resources: ClassVar[tuple[str, ...]] = ("sleep", "activity", "heartrate", "glucose")

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str = BASES[("production", "us")],
        webhook_secret: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.webhook_secret = webhook_secret
        self.timeout = timeout

    def __repr__(self) -> str:  # the key and the secret stay out of logs
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    @classmethod
    def from_env(cls, env: envlib.Env) -> Junction:
        """JUNCTION_API_KEY (or _FILE); JUNCTION_ENVIRONMENT (production or sandbox) and
        JUNCTION_REGION (us or eu) pick the base, JUNCTION_API_BASE overrides it (a fake in
        tests); JUNCTION_WEBHOOK_SECRET (or _FILE), the ``whsec_`` secret of the webhook
        endpoint; PROVIDER_TIMEOUT_SECONDS.  Raises SettingError."""
        environment = envlib.choice(env, "JUNCTION_ENVIRONMENT", "production", ("production", "sandbox"))
        region = envlib.choice(env, "JUNCTION_REGION", "us", ("us", "eu"))
        base_url = envlib.url(env, "JUNCTION_API_BASE", ("https", "http")) or BASES[(environment, region)]
        webhook_secret = envlib.secret(env, "JUNCTION_WEBHOOK_SECRET")
        if webhook_secret is not None:
            try:
                signing.decode_secret(webhook_secret)
            except signing.SecretError as exc:
                raise envlib.SettingError("JUNCTION_WEBHOOK_SECRET", str(exc)) from None
        return cls(
            envlib.secret(env, "JUNCTION_API_KEY"),
            base_url=base_url,
            webhook_secret=webhook_secret,
            timeout=timeout_from_env(env),
        )

    @property
    def configured(self) -> bool:
        return self._api_key is not None

    @property
    def unavailable_reason(self) -> str | None:
        return None if self.configured else f"{self.display_name} needs JUNCTION_API_KEY (the team API key)"

    @staticmethod
    def user_id(tokens: Mapping[str, Any], settings: Mapping[str, Any]) -> str:
        """The connection's Junction user id: set in its settings, or stored with it at link
        time.  Raises PermanentSyncError when it has neither."""
        for found in (settings.get("user_id"), tokens.get("user_id")):
            if isinstance(found, str) and found.strip():
                return found.strip()
        raise PermanentSyncError("junction: the connection names no Junction user id")

    async def fetch(
        self, tokens: dict[str, Any], window: Window, settings: dict[str, Any]
    ) -> AsyncIterator[Reading | Session]:
        user = self.user_id(tokens, settings)
        days = {
            "start_date": (window.start - FILED_BY_DAY).astimezone(UTC).date().isoformat(),
            "end_date": window.end.astimezone(UTC).date().isoformat(),
        }
        span = {"start_date": _stamp(window.start), "end_date": _stamp(window.end)}
        # LibreView's glucose is stamped in the wearer's wall clock, and Junction does not say how
        # a range meets such stamps: ask for every offset's worth more, keep what is in the window.
        floating_span = {
            "start_date": _stamp(window.start - FLOATING_REACH),
            "end_date": _stamp(window.end + FLOATING_REACH),
        }
        floating = _floating_zone(settings)
        async with self._session() as http:
            for resource in self.resources:
                if window.only is not None and resource not in window.only:
                    continue  # a push named what changed: the rest is left to the next full sync
                items: AsyncIterator[Reading | Session]
                if resource in TIMESERIES:
                    path = f"/v2/timeseries/{user}/{resource}/grouped"
                    reach = floating_span if resource in FLOATING_RESOURCES else span
                    items = self._samples(http, path, reach, resource, floating)
                else:
                    items = self._summaries(http, f"/v2/summary/{resource}/{user}", days, resource)
                async for item in items:
                    if _inside(item, window):
                        yield item

    async def _summaries(
        self, http: aiohttp.ClientSession, path: str, params: dict[str, str], resource: str
    ) -> AsyncIterator[Reading | Session]:
        page = await self._get(http, path, params)
        docs = page.get(resource)
        if not isinstance(docs, list):
            raise TransientSyncError(f"junction answered {resource} without a {resource} list")
        normalise = normalise_sleep if resource == "sleep" else normalise_activity
        for doc in docs:
            for item in normalise(doc) if isinstance(doc, dict) else []:
                yield item

    async def _samples(
        self, http: aiohttp.ClientSession, path: str, params: dict[str, str], resource: str, floating: tzinfo
    ) -> AsyncIterator[Reading | Session]:
        """Every sample of every source group, following ``next_cursor`` page by page."""
        seen: set[str] = set()
        while True:
            page = await self._get(http, path, params)
            groups = page.get("groups")
            if not isinstance(groups, dict):
                raise TransientSyncError(f"junction answered {resource} without groups")
            for slug, batches in groups.items():
                if self.sources is not None and slug not in self.sources:
                    continue
                zone = floating if slug in LIBRE_SOURCES else None
                for batch in batches if isinstance(batches, list) else []:
                    samples = batch.get("data") if isinstance(batch, dict) else None
                    for sample in samples if isinstance(samples, list) else []:
                        if isinstance(sample, dict):
                            for reading in normalise_sample(resource, sample, zone):
                                yield reading
            cursor = page.get("next_cursor") or page.get("next")
            if not isinstance(cursor, str) or not cursor:
                return
            if cursor in seen:  # a server that repeats a cursor would loop forever
                raise TransientSyncError(f"junction repeated a page cursor on {resource}")
            seen.add(cursor)
            params = params | {"cursor": cursor}

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[aiohttp.ClientSession]:
        """A session for one fetch, on the running loop (see RestProvider.session)."""
        if self._api_key is None:
            raise PermanentSyncError(self.unavailable_reason or "junction is not configured")
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(timeout=timeout, headers=HEADERS | {KEY_HEADER: self._api_key}) as http:
            yield http

    async def _get(self, http: aiohttp.ClientSession, path: str, params: Mapping[str, str]) -> JSON:
        found = await self._call(http, "GET", path, params=params)
        assert found is not None  # only a call with missing_ok answers None
        return found

    async def _call(
        self,
        http: aiohttp.ClientSession,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: JSON | None = None,
        missing_ok: bool = False,
    ) -> JSON | None:
        """The JSON object Junction answers; None for a 404 when ``missing_ok``.  Raises per the
        module docstring."""
        url = self.base_url + path
        async with translate_errors(self.id), http.request(method, url, params=params, json=body) as resp:
            if resp.status in (401, 403):
                # The team key, not a user's token: refreshing or reconnecting a user cannot help.
                raise PermanentSyncError(f"junction answered {resp.status}: the API key was refused (JUNCTION_API_KEY)")
            if resp.status == 404 and missing_ok:
                return None
            await check(self.id, resp, [self._api_key])
            return await read_json(self.id, resp)

    async def link(self, client_user_id: str, redirect_url: str | None = None) -> JunctionLink:
        """The Junction user for our ``client_user_id`` (found, else created) and a Junction Link
        URL where the person connects their devices; for Libre, the widget offers LibreView only.
        Raises TransientSyncError or PermanentSyncError."""
        async with self._session() as http:
            found = await self._call(http, "GET", f"/v2/user/resolve/{quote(client_user_id, safe='')}", missing_ok=True)
            if found is None:
                found = await self._call(http, "POST", "/v2/user", body={"client_user_id": client_user_id})
            user_id = found.get("user_id") if found else None
            if not isinstance(user_id, str) or not user_id:
                raise TransientSyncError("junction answered the user request without a user_id")
            request: JSON = {"user_id": user_id}
            if redirect_url is not None:
                request["redirect_url"] = redirect_url
            if self.sources is not None:
                request["filter_on_providers"] = sorted(self.sources)
            token = await self._call(http, "POST", "/v2/link/token", body=request)
        url = token.get("link_web_url") if token else None
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise TransientSyncError("junction answered the link token request without a link_web_url")
        return JunctionLink(user_id, url)


# -- push webhooks ------------------------------------------------------------------------------


def verify_push(
    body: bytes,
    headers: Mapping[str, str],
    secret: str,
    *,
    now: float | None = None,
    tolerance: timedelta = timedelta(seconds=signing.TOLERANCE),
) -> None:
    """Raises BadSignature unless a ``v1`` entry of ``svix-signature`` signs
    ``svix-id.svix-timestamp.body`` with ``secret`` and the timestamp is within ``tolerance``."""
    msg_id, stamp, signature = (headers.get(name, "").strip() for name in SVIX_HEADERS)
    if not msg_id or not stamp or not signature:
        raise BadSignature("svix-id, svix-timestamp and svix-signature are required")
    current = time.time() if now is None else now
    if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12:
        raise BadSignature("svix-timestamp is not a number of seconds")
    if abs(int(stamp) - current) > tolerance.total_seconds():
        raise BadSignature("the signature timestamp is outside the replay window")
    # Freshness is settled above against our window; the library checks only the HMAC here.
    if not signing.verify(secret, msg_id, stamp, body, signature, now=float(stamp)):
        raise BadSignature("the signature does not match")


def parse_push(body: bytes) -> PushEvent:
    """The account and kind of one Junction event.  Data events about a resource we read ask for
    a sync, of the ``libre`` connection when the source is LibreView; the rest (connection
    events, workouts, ...) are only logged."""
    doc = json_object(body)
    kind = doc.get("event_type")
    if not isinstance(kind, str) or not kind or len(kind) > 96 or not kind.isprintable():
        raise MalformedPush("event_type must be a string")
    data = _object(doc.get("data"))
    user = doc.get("user_id") or data.get("user_id")
    if not isinstance(user, str) or not user.strip() or len(user) > 128 or not user.isprintable():
        raise MalformedPush("user_id must identify the Junction user")
    source = _object(data.get("source"))
    slug = source.get("provider") or source.get("slug") or data.get("provider")
    slug = slug if isinstance(slug, str) else None  # a connection event names an object here
    provider, reads = (LIBRE_ID, LIBRE_RESOURCES) if slug in LIBRE_SOURCES else (Junction.id, Junction.resources)
    # "daily.data.glucose.created": a sync, of that resource only, when the connection reads it.
    parts = kind.split(".")
    resource = parts[2] if kind.startswith(DATA_EVENTS) and len(parts) > 2 else None
    if resource not in reads:
        return PushEvent(provider, user.strip(), kind, sync=False)
    # A backfill says which span it looked through; a daily event's own span is the sync's.
    window = _span(data) if kind.startswith("historical.") else None
    return PushEvent(provider, user.strip(), kind, window=window, only=frozenset({resource}))


def _span(data: Mapping[str, Any]) -> Window | None:
    """``start_date``..``end_date`` of a historical pull, when both are aware times in order."""
    start, end = _parse(data.get("start_date")), _parse(data.get("end_date"))
    return Window(start, end) if start is not None and end is not None and start <= end else None


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
