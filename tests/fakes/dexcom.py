"""A local Dexcom API v3, speaking the documented format, with faults a test can program.

Follows https://developer.dexcom.com/docs/dexcomv3/operation/getEstimatedGlucoseValuesV3,
/docs/dexcomv3/endpoint-overview and /docs/dexcom/authentication:

* ``GET /v3/users/self/egvs``: bearer token; ``startDate`` and ``endDate`` required, UTC
  ``YYYY-MM-DDThh:mm:ss`` without an offset, at most 30 days apart; answers
  ``{"recordType": "egv", "recordVersion": "3.0", "userId", "records": [...]}`` with no pages.
  A bad token gets Apigee's ``{"fault": {...}}`` 401.
* ``GET /v3/users/self/dataRange`` (/docs/dexcomv3/operation/getDataRangeV3): ``{"recordType":
  "dataRange", "recordVersion": "3.0", "userId", "calibrations", "egvs", "events"}``, each
  range ``{"start": {"systemTime", "displayTime"}, "end": {...}}`` or null when empty.
* ``POST /v2/oauth2/token``: form-encoded grants with ``client_id``/``client_secret`` in the form;
  refresh tokens are single-use and rotate.

Faults are ``tests.fakes.server.Fault``s.  It runs on its own thread and loop.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from aiohttp import web

from tests.fakes.server import GRANTS, Doc, OAuthAccount, OAuthServer

MAX_RANGE = timedelta(days=30)


@dataclass
class Account(OAuthAccount):
    token_prefix: ClassVar[str] = "dexcom"
    token_lifetime: ClassVar[timedelta] = timedelta(hours=2)

    user_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    records: list[Doc] = field(default_factory=list)


class FakeDexcom(OAuthServer[Account]):
    name = "Dexcom"

    def __init__(self, client_id: str = "cb-dexcom-client", client_secret: str = "cb-dexcom-secret") -> None:
        super().__init__(Account, client_id, client_secret)

    def env(self) -> dict[str, str]:
        """What a worker needs to use this server as Dexcom (the token URL follows the base)."""
        return {
            "DEXCOM_API_BASE": self.url,
            "DEXCOM_CLIENT_ID": self.client_id,
            "DEXCOM_CLIENT_SECRET": self.client_secret,
        }

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v3/users/self/dataRange", self._data_range)
        app.router.add_get("/v3/users/self/egvs", self._egvs)
        app.router.add_post("/v2/oauth2/token", self._token)

    async def _data_range(self, request: web.Request) -> web.StreamResponse:
        account = self.bearer(request)
        if account is None:
            fault = {"faultstring": "Invalid Access Token", "detail": {"errorcode": "invalid_access_token"}}
            return web.json_response({"fault": fault}, status=401)
        account.record(request)
        times = sorted(r["systemTime"] for r in account.records)
        egvs = None
        if times:
            egvs = {"start": {"systemTime": times[0], "displayTime": times[0]},
                    "end": {"systemTime": times[-1], "displayTime": times[-1]}}  # fmt: skip
        body = {"recordType": "dataRange", "recordVersion": "3.0", "userId": account.user_id,
                "calibrations": None, "egvs": egvs, "events": None}  # fmt: skip
        return web.json_response(body)

    async def _egvs(self, request: web.Request) -> web.StreamResponse:
        account = self.bearer(request)
        if account is None:
            fault = {"faultstring": "Invalid Access Token", "detail": {"errorcode": "invalid_access_token"}}
            return web.json_response({"fault": fault}, status=401)
        account.record(request)
        if (early := await account.play(request)) is not None:
            return early
        try:
            start, end = _utc(request.query["startDate"]), _utc(request.query["endDate"])
        except (KeyError, ValueError) as exc:
            return web.json_response({"message": f"startDate and endDate are required UTC times: {exc}"}, status=400)
        if not timedelta(0) <= end - start <= MAX_RANGE:
            return web.json_response({"message": "The maximum time window is 30 days"}, status=400)
        found = [r for r in account.records if start <= _utc(r["systemTime"][:19]) <= end]
        body = {"recordType": "egv", "recordVersion": "3.0", "userId": account.user_id, "records": found}
        return web.json_response(body)

    async def _token(self, request: web.Request) -> web.StreamResponse:
        form = await self.token_form(request)
        if not self.client_matches(form):
            return web.json_response({"error": "invalid_client", "error_description": "Invalid client"}, status=401)
        if form.get("grant_type") not in GRANTS:
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        account = self.granted(form)
        if account is not None and (early := await account.play(request, token=True)) is not None:
            return early
        if account is None or account.revoked:
            return web.json_response(
                {"error": "invalid_grant", "error_description": "Invalid refresh token"}, status=400
            )
        account.rotate()
        body = {
            "access_token": account.access_token,
            "expires_in": 7200,
            "token_type": "Bearer",
            "refresh_token": account.refresh_token,
        }
        return web.json_response(body)


def _utc(text: str) -> datetime:
    parsed = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S")  # an offset is refused, as Dexcom documents
    return parsed.replace(tzinfo=UTC)


def egv(at: datetime, value: Any = 112, *, unit: str = "mg/dL", status: str = "ok", app: bool = False) -> Doc:
    """One EGV record; a receiver's times have no offset, an app's have one."""
    local = at.astimezone(UTC)
    stamp = local.strftime("%Y-%m-%dT%H:%M:%S") + ("+00:00" if app else "")
    return {
        "recordId": str(uuid.uuid4()),
        "systemTime": stamp,
        "displayTime": stamp,
        "transmitterId": "8HX3LM",
        "transmitterTicks": 64309839,
        "value": value,
        "status": status,
        "trend": "flat",
        "trendRate": -0.2,
        "unit": unit,
        "rateUnit": "mg/dL/min" if unit == "mg/dL" else "mmol/L/min",
        "displayDevice": "iOS" if app else "receiver",
        "transmitterGeneration": "g7",
    }


def every_five_minutes(start: datetime, hours: float) -> list[Doc]:
    return [egv(start + timedelta(minutes=5 * i), 100 + i % 40) for i in range(int(hours * 12))]
