"""Withings: the Withings public health data API (https://developer.withings.com/api-reference).

``POST /measure`` with ``action=getmeas`` returns measure groups, each a moment (``date``, unix
seconds) with measures of ``value × 10^unit``.  Pages chain by ``more`` and ``offset``.

====  ===========================  ==========================
Type  Withings measure             Reading
====  ===========================  ==========================
1     Weight (kg)                  weight (kg)
9     Diastolic blood pressure     blood_pressure_diastolic
10    Systolic blood pressure      blood_pressure_systolic
11    Heart pulse (bpm)            heart_rate (bpm)
54    SpO2 (%)                     spo2 (%)
71    Body temperature (°C)        body_temperature (°C)
====  ===========================  ==========================

Skin temperature (type 73) is absolute, not a deviation from baseline, so it is not read.  Only
real measures are read (``category=1``, not goals), and a group whose ``attrib`` is 1 is
skipped: Withings could not tell which user of a shared scale it belongs to, and another
person's weight would raise false alerts.

Withings answers HTTP 200 and puts the outcome in the body: ``{"status": 0, "body": {...}}`` on
success, a non-zero ``status`` (and often ``error``) otherwise.  A non-zero status is an error,
never "no data" (the seed's defect): see ``unwrap`` for the mapping.  The token endpoint
(``/v2/oauth2``, ``action=requesttoken``) wraps its answer the same way.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aiohttp
from yarl import URL

from db import env as envlib
from db.metrics import Reading
from pipeline.errors import AccessTokenRejectedError, PermanentSyncError, RefreshFailedError, TransientSyncError
from pipeline.providers.base import Capabilities, Window
from pipeline.providers.http import (
    DEFAULT_TIMEOUT,
    DETAIL_LIMIT,
    JSON,
    OAuthApp,
    RestProvider,
    check,
    read_json,
    scrub,
    timeout_from_env,
    token_dict,
    translate_errors,
)
from pipeline.vocabulary import UNITS

API_BASE = "https://wbsapi.withings.net"
TOKEN_URL = "https://wbsapi.withings.net/v2/oauth2"
AUTHORIZE_URL = "https://account.withings.com/oauth2_user/authorize2"
SCOPES = ("user.metrics",)  # comma-separated in the URL, as Withings documents
MEASURES = {
    1: "weight",
    9: "blood_pressure_diastolic",
    10: "blood_pressure_systolic",
    11: "heart_rate",
    54: "spo2",
    71: "body_temperature",
}
REAL_MEASURES = 1  # category 2 holds the user's goals
AMBIGUOUS = 1  # attrib: captured by a device, but maybe of another user

# Body status families, from the API reference's "Response status" table.
AUTH_FAILED = frozenset({100, 101, 102, 200, 401})
TOO_MANY_REQUESTS = 601
TIMEOUT = 522
# At the token endpoint, "Invalid params" (503 "invalid refresh_token" or "invalid code") and
# "Authentication failed" both mean the grant is gone: the user must reconnect.
INVALID_PARAMS = 503


def unwrap(payload: JSON, secrets: list[str | None], *, token_request: bool = False) -> JSON:
    """The ``body`` of a Withings answer whose ``status`` is 0.  Otherwise raises:

    601 (too many requests) and 522 (timeout): TransientSyncError.  At the token endpoint, 503
    (invalid params) and the "authentication failed" family: RefreshFailedError.  On a data
    request, "authentication failed": AccessTokenRejectedError.  Any other status:
    PermanentSyncError with Withings' own message, secrets scrubbed.  Pure.
    """
    status = payload.get("status")
    if status == 0:
        body = payload.get("body")
        if not isinstance(body, dict):
            raise TransientSyncError("withings answered status 0 without a body object")
        return body
    error = payload.get("error")
    detail = scrub(" ".join(error.split()), secrets)[:DETAIL_LIMIT] if isinstance(error, str) else ""
    message = f"withings answered status {status}" + (f": {detail}" if detail else "")
    if not isinstance(status, int) or isinstance(status, bool):
        raise TransientSyncError("withings answered without a status")
    if status in (TOO_MANY_REQUESTS, TIMEOUT):
        raise TransientSyncError(message)
    if token_request and (status == INVALID_PARAMS or status in AUTH_FAILED):
        raise RefreshFailedError(f"{message}; the user must reconnect withings")
    if status in AUTH_FAILED:
        raise AccessTokenRejectedError(message)
    raise PermanentSyncError(message)


def normalise(group: Mapping[str, Any]) -> list[Reading]:
    """The readings of one measure group, in canonical units, at the group's ``date``.  Pure.

    Skips goals, ambiguous groups, types we do not map, and groups with no usable date.
    """
    if group.get("category") != REAL_MEASURES or group.get("attrib") == AMBIGUOUS:
        return []
    stamp = group.get("date")
    if not isinstance(stamp, int) or isinstance(stamp, bool):
        return []
    when = datetime.fromtimestamp(stamp, UTC)
    measures = group.get("measures")
    found = []
    for measure in measures if isinstance(measures, list) else []:
        kind = measure.get("type") if isinstance(measure, Mapping) else None
        metric = MEASURES.get(kind) if isinstance(kind, int) else None
        if metric is not None:
            found.append(Reading(metric, when, _scaled(measure.get("value"), measure.get("unit")), UNITS[metric]))
    return found


def _scaled(value: Any, unit: Any) -> float:
    # value × 10^unit, exactly: 72300 × 10^-3 is 72.3, not 72.30000000000001.
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in (value, unit)):
        return math.nan
    return float(Decimal(value).scaleb(unit))


def form(window: Window, offset: int | None = None) -> dict[str, str]:
    """The documented getmeas parameters for ``window`` (unix seconds)."""
    found = {
        "action": "getmeas",
        "meastypes": ",".join(str(t) for t in MEASURES),
        "category": str(REAL_MEASURES),
        "startdate": str(int(window.start.timestamp())),
        "enddate": str(math.ceil(window.end.timestamp())),
    }
    return found if offset is None else found | {"offset": str(offset)}


class Withings(RestProvider):
    id = "withings"
    display_name = "Withings"
    capabilities = Capabilities(rest_pull=True, webhook_push=True, refresh_tokens=True, max_history_days=None)
    metrics = frozenset(MEASURES.values())

    def __init__(
        self, oauth: OAuthApp | None = None, *, base_url: str = API_BASE, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        super().__init__(base_url, oauth, timeout=timeout)

    @classmethod
    def from_env(cls, env: envlib.Env) -> Withings:
        """WITHINGS_CLIENT_ID and WITHINGS_CLIENT_SECRET (or _FILE); WITHINGS_API_BASE and
        WITHINGS_TOKEN_URL point it elsewhere (a fake in tests); PROVIDER_TIMEOUT_SECONDS.
        Raises SettingError."""
        client_id, secret = envlib.text(env, "WITHINGS_CLIENT_ID"), envlib.secret(env, "WITHINGS_CLIENT_SECRET")
        if (client_id is None) != (secret is None):
            missing = "WITHINGS_CLIENT_SECRET" if secret is None else "WITHINGS_CLIENT_ID"
            raise envlib.SettingError(missing, "both WITHINGS_CLIENT_ID and WITHINGS_CLIENT_SECRET, or neither")
        token_url = envlib.url(env, "WITHINGS_TOKEN_URL", ("https", "http")) or TOKEN_URL
        oauth = OAuthApp(token_url, client_id, secret) if client_id and secret else None
        base_url = envlib.url(env, "WITHINGS_API_BASE", ("https", "http")) or API_BASE
        return cls(oauth, base_url=base_url, timeout=timeout_from_env(env))

    def authorize_url(self, redirect_uri: str, state: str) -> str:
        """Where /connect sends the user (Withings documents no PKCE).  Raises
        PermanentSyncError when unconfigured."""
        if self.oauth is None:
            raise PermanentSyncError(self.unavailable_reason or "withings is not configured")
        query = {"response_type": "code", "client_id": self.oauth.client_id, "redirect_uri": redirect_uri}
        return str(URL(AUTHORIZE_URL).with_query(query | {"scope": ",".join(SCOPES), "state": state}))

    async def refresh(self, tokens: dict[str, Any]) -> dict[str, Any]:
        """New tokens; Withings rotates the refresh token on every refresh."""
        refresh_token = tokens.get("refresh_token")
        if not refresh_token:
            raise RefreshFailedError("withings: no refresh token stored; the user must reconnect")
        request = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        found = await self._requesttoken(request, tokens.get("access_token"), refresh_token)
        return found if found.get("refresh_token") else found | {"refresh_token": refresh_token}

    async def exchange_code(self, code: str, redirect_uri: str, code_verifier: str | None = None) -> dict[str, Any]:
        """Tokens for an authorization code, with ``provider_user_id`` (Withings' ``userid``,
        which its notifications carry).  Withings documents no PKCE: a verifier is refused."""
        if code_verifier is not None:
            raise PermanentSyncError("withings: its token endpoint takes no PKCE verifier")
        request = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        return await self._requesttoken(request, code)

    async def _requesttoken(self, request: dict[str, str], *secrets: str | None) -> dict[str, Any]:
        async with self.session() as http:
            assert self.oauth is not None  # session() refuses an unconfigured provider
            data = request | {
                "action": "requesttoken",
                "client_id": self.oauth.client_id,
                "client_secret": self.oauth.client_secret,
            }
            hidden = self._secrets(*secrets)
            async with translate_errors(self.id), http.post(self.oauth.token_url, data=data) as resp:
                await check(self.id, resp, hidden, token_request=True)
                body = unwrap(await read_json(self.id, resp), hidden, token_request=True)
        tokens = token_dict(self.id, body)
        userid = body.get("userid")
        return tokens | ({"provider_user_id": str(userid)} if userid is not None else {})

    async def fetch(self, tokens: dict[str, Any], window: Window, settings: dict[str, Any]) -> AsyncIterator[Reading]:
        token = self.access_token(tokens)
        async with self.session() as http:
            async for group in self._groups(http, window, token):
                for reading in normalise(group):
                    if window.start <= reading.recorded_at <= window.end:
                        yield reading

    async def _groups(self, http: aiohttp.ClientSession, window: Window, token: str) -> AsyncIterator[JSON]:
        """Every measure group in ``window``, following ``more``/``offset`` page by page."""
        seen: set[int] = set()
        offset: int | None = None
        while True:
            body = await self._post(http, "/measure", form(window, offset), token)
            groups = body.get("measuregrps")
            if not isinstance(groups, list):
                raise TransientSyncError("withings answered getmeas without a measuregrps list")
            for group in groups:
                if isinstance(group, dict):
                    yield group
            if not body.get("more"):
                return
            offset = body.get("offset")
            if not isinstance(offset, int) or isinstance(offset, bool) or offset in seen:
                raise TransientSyncError("withings said there is more but gave no new offset")
            seen.add(offset)

    async def _post(self, http: aiohttp.ClientSession, path: str, data: dict[str, str], token: str) -> JSON:
        headers = {"Authorization": f"Bearer {token}"}
        hidden = self._secrets(token)
        async with translate_errors(self.id), http.post(self.base_url + path, data=data, headers=headers) as resp:
            await check(self.id, resp, hidden)
            return unwrap(await read_json(self.id, resp), hidden)
