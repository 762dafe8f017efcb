"""WHOOP: the WHOOP API v2 client (https://developer.whoop.com/api).

=================  ========================================  ====================================
Collection         WHOOP field (``score.…``)                 Reading or session
=================  ========================================  ====================================
activity/sleep     stage_summary total_*_time_milli          a sleep Session, stages in min
(not naps)         light + slow wave + REM (ms)              sleep_duration (min)
                   total_slow_wave / total_rem (ms)          sleep_deep, sleep_rem (min)
                   sleep_efficiency_percentage               sleep_efficiency (%)
                   respiratory_rate                          respiratory_rate (/min)
recovery           recovery_score                            recovery_score (not while calibrating)
                   resting_heart_rate, hrv_rmssd_milli       resting_heart_rate, hrv_rmssd (ms)
                   spo2_percentage                           spo2 (%)
cycle              strain (0-21)                             strain
activity/workout   kilojoule, distance_meter, heart rates    a workout Session (kJ / 4.184 = kcal)
=================  ========================================  ====================================

Only records whose ``score_state`` is ``SCORED`` count: a pending or unscorable record has no
score.  A null field yields nothing; a field that is not a number yields NaN, so the sync counts
it invalid.  Sleep readings are dated at the sleep's ``end``, a recovery at the end of its sleep
(at its ``created_at`` when that sleep was not read), a cycle's strain at the cycle's ``start``.

Not mapped, on purpose: ``skin_temp_celsius`` is an absolute skin temperature, not the deviation
from baseline that ``skin_temp_deviation`` means; a cycle's ``kilojoule`` is the day's total
expenditure, basal energy included, so it is not ``active_energy`` (our vocabulary has no total).

WHOOP filters each collection by the record's start, so the query starts a day before the window
(a night that ends in the window began the evening before); only readings inside the window are
yielded.  Pages hold at most 25 records and chain by ``next_token``.  WHOOP limits each app to
100 requests a minute and 10,000 a day; a 429 waits ``Retry-After`` or, as WHOOP documents,
``X-RateLimit-Reset`` seconds.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp
from yarl import URL

from db import env as envlib
from db.metrics import Reading
from db.sessions import Session
from pipeline.errors import PermanentSyncError, RefreshFailedError, TransientSyncError
from pipeline.providers.base import Capabilities, Window
from pipeline.providers.http import (
    DEFAULT_TIMEOUT,
    JSON,
    OAuthApp,
    RestProvider,
    check,
    read_json,
    retry_after,
    timeout_from_env,
    translate_errors,
)
from pipeline.vocabulary import FILED_BY_DAY, UNITS

API_BASE = "https://api.prod.whoop.com/developer"
TOKEN_URL = "https://api.prod.whoop.com/oauth/oauth2/token"
AUTHORIZE_URL = "https://api.prod.whoop.com/oauth/oauth2/auth"
# ``offline`` is what makes WHOOP hand out a refresh token; read:profile gives the user id.
SCOPES = ("read:recovery", "read:cycles", "read:sleep", "read:workout", "read:profile", "offline")
PAGE_LIMIT = 25  # WHOOP's documented maximum
# Sleep first: a recovery is dated by the end of the sleep it follows.
PATHS = {
    "sleep": "/v2/activity/sleep",
    "recovery": "/v2/recovery",
    "cycle": "/v2/cycle",
    "workout": "/v2/activity/workout",
}
# What a webhook's ``type`` calls for reading.  A recovery is dated by the end of its sleep, so
# it is read with the sleeps: alone, it would be stored again at another time.
PUSHED = {
    "sleep.updated": frozenset({"sleep"}),
    "recovery.updated": frozenset({"sleep", "recovery"}),
    "workout.updated": frozenset({"workout"}),
}
KJ_PER_KCAL = 4.184
MINUTES = 1 / 60_000  # WHOOP durations are milliseconds
STAGES = {
    "deep_min": "total_slow_wave_sleep_time_milli",
    "rem_min": "total_rem_sleep_time_milli",
    "light_min": "total_light_sleep_time_milli",
    "awake_min": "total_awake_time_milli",
}
METRICS = frozenset(
    {
        "sleep_duration", "sleep_deep", "sleep_rem", "sleep_efficiency", "respiratory_rate",
        "recovery_score", "resting_heart_rate", "hrv_rmssd", "spo2", "strain",
    }
)  # fmt: skip

Doc = Mapping[str, Any]


def normalise(collection: str, doc: Doc, woke_at: datetime | None = None) -> list[Reading | Session]:
    """The readings and sessions in one WHOOP record, in canonical units.  Pure.

    ``woke_at`` dates a recovery (the end of its sleep).  Skips unscored records, null fields,
    and records with no usable time.
    """
    if doc.get("score_state") != "SCORED" or not isinstance(doc.get("score"), Mapping):
        return []
    score: Doc = doc["score"]
    if collection == "sleep":
        return _sleep(doc, score)
    if collection == "recovery":
        when = woke_at or _parse(doc.get("created_at"))
        fields = {"resting_heart_rate": "resting_heart_rate", "hrv_rmssd": "hrv_rmssd_milli", "spo2": "spo2_percentage"}
        # A calibrating user's recovery is WHOOP's guess, not a measurement; the rest are measured.
        if score.get("user_calibrating") is not True:
            fields = {"recovery_score": "recovery_score"} | fields
        return _readings(when, score, fields)
    if collection == "cycle":
        return _readings(_parse(doc.get("start")), score, {"strain": "strain"})
    if collection == "workout":
        return _workout(doc, score)
    raise ValueError(f"unknown WHOOP collection {collection!r}")


def _sleep(doc: Doc, score: Doc) -> list[Reading | Session]:
    started, ended = _parse(doc.get("start")), _parse(doc.get("end"))
    if started is None or ended is None:
        return []
    stages = score.get("stage_summary")
    stages = stages if isinstance(stages, Mapping) else {}
    details = {key: _number(stages[field]) * MINUTES for key, field in STAGES.items() if stages.get(field) is not None}
    found: list[Reading | Session] = [Session("sleep", started, ended, None, details)]
    if doc.get("nap") is not False:  # a nap is a session, but not the night's readings
        return found
    asleep = [stages.get(STAGES[key]) for key in ("light_min", "deep_min", "rem_min")]
    if all(part is not None for part in asleep):
        found.append(_reading("sleep_duration", ended, sum(_number(part) for part in asleep) * MINUTES))
    found += _readings(ended, stages, {"sleep_deep": STAGES["deep_min"], "sleep_rem": STAGES["rem_min"]}, MINUTES)
    found += _readings(
        ended, score, {"sleep_efficiency": "sleep_efficiency_percentage", "respiratory_rate": "respiratory_rate"}
    )
    return found


def _workout(doc: Doc, score: Doc) -> list[Reading | Session]:
    started, ended = _parse(doc.get("start")), _parse(doc.get("end"))
    if started is None or ended is None:
        return []
    sources = {
        "energy_kcal": ("kilojoule", 1 / KJ_PER_KCAL),
        "distance_m": ("distance_meter", 1.0),
        "avg_heart_rate_bpm": ("average_heart_rate", 1.0),
        "max_heart_rate_bpm": ("max_heart_rate", 1.0),
    }
    details = {
        key: _number(score[field]) * scale for key, (field, scale) in sources.items() if score.get(field) is not None
    }
    sport = doc.get("sport_name")
    # sport_id is the v1 field WHOOP retires; a name is what a person reads.
    activity = sport if isinstance(sport, str) and sport else _sport_id(doc.get("sport_id"))
    return [Session("workout", started, ended, activity, details)]


def _sport_id(raw: Any) -> str | None:
    return f"sport {raw}" if isinstance(raw, int) and not isinstance(raw, bool) else None


def _readings(
    when: datetime | None, source: Doc, fields: dict[str, str], scale: float = 1.0
) -> list[Reading | Session]:
    if when is None:
        return []
    return [
        _reading(metric, when, _number(source[key]) * scale)
        for metric, key in fields.items()
        if source.get(key) is not None
    ]


def _reading(metric: str, when: datetime, value: float) -> Reading:
    return Reading(metric, when, value, UNITS[metric])


def _number(raw: Any) -> float:
    return float(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) else math.nan


def _parse(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def query(window: Window) -> dict[str, str]:
    """The documented query parameters for ``window``: a day early, 25 records a page."""
    start = (window.start - FILED_BY_DAY).astimezone(UTC)
    return {"start": _stamp(start), "end": _stamp(window.end.astimezone(UTC)), "limit": str(PAGE_LIMIT)}


def _stamp(at: datetime) -> str:
    # WHOOP's own examples: milliseconds and "Z" (a "+" would arrive as a space if unescaped).
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


class Whoop(RestProvider):
    id = "whoop"
    display_name = "WHOOP"
    capabilities = Capabilities(rest_pull=True, webhook_push=True, refresh_tokens=True, max_history_days=None)
    metrics = METRICS

    def __init__(
        self, oauth: OAuthApp | None = None, *, base_url: str = API_BASE, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        super().__init__(base_url, oauth, timeout=timeout)

    @classmethod
    def from_env(cls, env: envlib.Env) -> Whoop:
        """WHOOP_CLIENT_ID and WHOOP_CLIENT_SECRET (or _FILE); WHOOP_API_BASE and WHOOP_TOKEN_URL
        point it elsewhere (a fake in tests); PROVIDER_TIMEOUT_SECONDS.  Raises SettingError."""
        client_id, secret = envlib.text(env, "WHOOP_CLIENT_ID"), envlib.secret(env, "WHOOP_CLIENT_SECRET")
        if (client_id is None) != (secret is None):
            missing = "WHOOP_CLIENT_SECRET" if secret is None else "WHOOP_CLIENT_ID"
            raise envlib.SettingError(missing, "both WHOOP_CLIENT_ID and WHOOP_CLIENT_SECRET, or neither")
        token_url = envlib.url(env, "WHOOP_TOKEN_URL", ("https", "http")) or TOKEN_URL
        oauth = OAuthApp(token_url, client_id, secret) if client_id and secret else None
        base_url = envlib.url(env, "WHOOP_API_BASE", ("https", "http")) or API_BASE
        return cls(oauth, base_url=base_url, timeout=timeout_from_env(env))

    def authorize_url(self, redirect_uri: str, state: str) -> str:
        """Where /connect sends the user.  WHOOP wants a ``state`` of at least 8 characters and
        documents no PKCE.  Raises PermanentSyncError when unconfigured or the state is short."""
        if self.oauth is None:
            raise PermanentSyncError(self.unavailable_reason or "whoop is not configured")
        if len(state) < 8:
            raise PermanentSyncError("whoop: the OAuth state must be at least 8 characters")
        query = {"response_type": "code", "client_id": self.oauth.client_id, "redirect_uri": redirect_uri}
        return str(URL(AUTHORIZE_URL).with_query(query | {"scope": " ".join(SCOPES), "state": state}))

    async def refresh(self, tokens: dict[str, Any]) -> dict[str, Any]:
        """New tokens.  WHOOP's refresh grant must ask for ``offline`` again to get the next
        refresh token; the old one is spent."""
        refresh_token = tokens.get("refresh_token")
        if not refresh_token:
            raise RefreshFailedError("whoop: no refresh token stored; the user must reconnect")
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "scope": "offline"}
        found = await self._token_request(form, tokens.get("access_token"), refresh_token)
        return found if found.get("refresh_token") else found | {"refresh_token": refresh_token}

    async def fetch(
        self, tokens: dict[str, Any], window: Window, settings: dict[str, Any]
    ) -> AsyncIterator[Reading | Session]:
        token = self.access_token(tokens)
        params = query(window)
        woke: dict[str, datetime] = {}
        async with self.session() as http:
            for collection, path in PATHS.items():
                if window.only is not None and collection not in window.only:
                    continue
                async for doc in self._records(http, path, params, token):
                    if collection == "sleep" and isinstance(doc.get("id"), str):
                        ended = _parse(doc.get("end"))
                        if ended is not None:
                            woke[doc["id"]] = ended
                    sleep_id = doc.get("sleep_id")
                    at = woke.get(sleep_id) if isinstance(sleep_id, str) else None
                    for item in normalise(collection, doc, at):
                        if _inside(item, window):
                            yield item

    async def get_json(self, http: aiohttp.ClientSession, path: str, params: Mapping[str, str], token: str) -> JSON:
        """As RestProvider's, but a 429 without ``Retry-After`` waits for ``X-RateLimit-Reset``
        (seconds until WHOOP's window resets, per its rate-limiting page)."""
        headers = {"Authorization": f"Bearer {token}"}
        async with translate_errors(self.id), http.get(self.base_url + path, params=params, headers=headers) as resp:
            if resp.status == 429 and "Retry-After" not in resp.headers:
                wait = retry_after(resp.headers.get("X-RateLimit-Reset"))
                raise TransientSyncError("whoop answered 429: rate limit reached", wait)
            await check(self.id, resp, self._secrets(token))
            return await read_json(self.id, resp)

    async def provider_user_id(self, tokens: dict[str, Any]) -> str:
        """The WHOOP user id of ``tokens`` (``/v2/user/profile/basic``), which webhooks carry."""
        return await self.account_id(tokens, "/v2/user/profile/basic", "user_id")

    async def _records(
        self, http: aiohttp.ClientSession, path: str, params: dict[str, str], token: str
    ) -> AsyncIterator[JSON]:
        """Every record of one collection, following ``next_token`` page by page."""
        seen: set[str] = set()
        while True:
            page = await self.get_json(http, path, params, token)
            records = page.get("records")
            if not isinstance(records, list):
                raise TransientSyncError(f"whoop answered {path} without a records list")
            for doc in records:
                if isinstance(doc, dict):
                    yield doc
            next_token = page.get("next_token")
            if not isinstance(next_token, str) or not next_token:
                return
            if next_token in seen:  # a server that repeats a cursor would loop forever
                raise TransientSyncError(f"whoop repeated a page token on {path}")
            seen.add(next_token)
            params = params | {"nextToken": next_token}


def _inside(item: Reading | Session, window: Window) -> bool:
    """Whether ``item`` belongs to the window; a session may end up to a day before it."""
    at = item.ended_at if isinstance(item, Session) else item.recorded_at
    if at.tzinfo is None:  # passed on, for the sync's validation to count as invalid
        return True
    start = window.start - FILED_BY_DAY if isinstance(item, Session) else window.start
    return start <= at <= window.end
