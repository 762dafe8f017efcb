"""Dexcom: the Dexcom API v3 client for CGM glucose (https://developer.dexcom.com/docs/dexcomv3).

``GET /v3/users/self/egvs?startDate=&endDate=`` returns every estimated glucose value (about one
each 5 minutes) in ``records``; there are no pages.  Dates are UTC ``YYYY-MM-DDThh:mm:ss``
without an offset, and a query may span at most 30 days, so longer windows are read in chunks.

Each record becomes one ``glucose`` reading in mg/dL at its ``systemTime`` (UTC; receivers send
it without an offset, apps with one).  ``mmol/L`` values are multiplied by 18.016.  A value
outside the sensor's 40-400 mg/dL range comes as ``status`` ``low`` or ``high``: with a value,
that value is kept; without one it is clamped to the range end (40 or 400 mg/dL), so a severe
low still reaches the alert rules instead of vanishing.  A record with neither is skipped; a
value that is not a number, or in a unit Dexcom calls ``unknown``, is passed on as NaN, so the
sync counts it invalid.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from yarl import URL

from db import env as envlib
from db.metrics import Reading
from pipeline.errors import PermanentSyncError, TransientSyncError
from pipeline.providers.base import Capabilities, Window
from pipeline.providers.http import DEFAULT_TIMEOUT, OAuthApp, RestProvider, timeout_from_env

# Dexcom's documented bases: the sandbox, and production by region.
ENVIRONMENTS = {
    "production": "https://api.dexcom.com",
    "eu": "https://api.dexcom.eu",
    "jp": "https://api.dexcom.jp",
    "sandbox": "https://sandbox-api.dexcom.com",
}
TOKEN_PATH = "/v2/oauth2/token"
LOGIN_PATH = "/v2/oauth2/login"
SCOPES = ("offline_access",)  # the only scope Dexcom accepts
MAX_RANGE = timedelta(days=30)
MG_DL_PER_MMOL_L = 18.016
# The G6/G7 measuring range: "low" means at most 40 mg/dL, "high" at least 400.
CLAMPED = {"low": 40.0, "high": 400.0}


def normalise(record: Mapping[str, Any]) -> list[Reading]:
    """The glucose reading in one EGV record, in mg/dL (empty when it has none).  Pure."""
    when = _system_time(record.get("systemTime"))
    if when is None:
        return []
    raw, unit = record.get("value"), record.get("unit")
    if raw is None:
        clamped = CLAMPED.get(str(record.get("status")))
        return [] if clamped is None else [Reading("glucose", when, clamped, "mg/dL")]
    if not isinstance(raw, int | float) or isinstance(raw, bool):
        return [Reading("glucose", when, math.nan, "mg/dL")]
    if unit == "mmol/L":
        return [Reading("glucose", when, raw * MG_DL_PER_MMOL_L, "mg/dL")]
    return [Reading("glucose", when, float(raw) if unit == "mg/dL" else math.nan, "mg/dL")]


def _system_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    # systemTime is UTC by definition; receivers just leave the offset out.
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def queries(window: Window) -> Iterator[dict[str, str]]:
    """The documented query parameters covering ``window``, one per chunk of at most 30 days."""
    start, end = window.start.astimezone(UTC), window.end.astimezone(UTC)
    while True:
        stop = min(start + MAX_RANGE, end)
        yield {"startDate": _stamp(start), "endDate": _stamp(stop)}
        if stop >= end:
            return
        start = stop


def _stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S")


class Dexcom(RestProvider):
    id = "dexcom"
    display_name = "Dexcom"
    capabilities = Capabilities(rest_pull=True, webhook_push=False, refresh_tokens=True, max_history_days=None)
    metrics = frozenset({"glucose"})

    def __init__(
        self,
        oauth: OAuthApp | None = None,
        *,
        base_url: str = ENVIRONMENTS["production"],
        login_base: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        super().__init__(base_url, oauth, timeout=timeout)
        # The login page lives on the environment's host even when the API goes through a proxy.
        self.login_base = (login_base or base_url).rstrip("/")

    @classmethod
    def from_env(cls, env: envlib.Env) -> Dexcom:
        """DEXCOM_CLIENT_ID and DEXCOM_CLIENT_SECRET (or _FILE); DEXCOM_ENVIRONMENT (production,
        eu, jp or sandbox); DEXCOM_API_BASE and DEXCOM_TOKEN_URL point it elsewhere (a fake in
        tests); PROVIDER_TIMEOUT_SECONDS.  Raises SettingError."""
        client_id, secret = envlib.text(env, "DEXCOM_CLIENT_ID"), envlib.secret(env, "DEXCOM_CLIENT_SECRET")
        if (client_id is None) != (secret is None):
            missing = "DEXCOM_CLIENT_SECRET" if secret is None else "DEXCOM_CLIENT_ID"
            raise envlib.SettingError(missing, "both DEXCOM_CLIENT_ID and DEXCOM_CLIENT_SECRET, or neither")
        environment = ENVIRONMENTS[envlib.choice(env, "DEXCOM_ENVIRONMENT", "production", tuple(ENVIRONMENTS))]
        base_url = envlib.url(env, "DEXCOM_API_BASE", ("https", "http")) or environment
        token_url = envlib.url(env, "DEXCOM_TOKEN_URL", ("https", "http")) or base_url.rstrip("/") + TOKEN_PATH
        oauth = OAuthApp(token_url, client_id, secret) if client_id and secret else None
        return cls(oauth, base_url=base_url, login_base=environment, timeout=timeout_from_env(env))

    def authorize_url(self, redirect_uri: str, state: str) -> str:
        """Where /connect sends the user (Dexcom documents no PKCE).  Raises PermanentSyncError
        when unconfigured."""
        if self.oauth is None:
            raise PermanentSyncError(self.unavailable_reason or "dexcom is not configured")
        query = {"client_id": self.oauth.client_id, "redirect_uri": redirect_uri, "response_type": "code"}
        return str(URL(self.login_base + LOGIN_PATH).with_query(query | {"scope": " ".join(SCOPES), "state": state}))

    async def provider_user_id(self, tokens: dict[str, Any]) -> str:
        """The Dexcom user id of ``tokens``: the ``userId`` of ``/v3/users/self/dataRange``."""
        return await self.account_id(tokens, "/v3/users/self/dataRange", "userId")

    async def fetch(self, tokens: dict[str, Any], window: Window, settings: dict[str, Any]) -> AsyncIterator[Reading]:
        token = self.access_token(tokens)
        # Chunks share their boundary instant; a reading on it came with the earlier chunk.
        floor: datetime | None = None
        async with self.session() as http:
            for params in queries(window):
                page = await self.get_json(http, "/v3/users/self/egvs", params, token)
                records = page.get("records")
                if not isinstance(records, list):
                    raise TransientSyncError("dexcom answered egvs without a records list")
                for record in records:
                    for reading in normalise(record) if isinstance(record, dict) else []:
                        at = reading.recorded_at
                        if window.start <= at <= window.end and (floor is None or at > floor):
                            yield reading
                floor = datetime.fromisoformat(params["endDate"]).replace(tzinfo=UTC)
