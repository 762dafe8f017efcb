"""A local Withings public API, speaking the documented format, with faults a test can program.

Follows https://developer.withings.com/api-reference (``measure-getmeas``, ``oauth2-getaccesstoken``
and the "Response status" table):

* ``POST /measure`` with ``action=getmeas``: bearer token; ``meastypes`` (comma-separated),
  ``category``, ``startdate``/``enddate`` (unix seconds), ``offset``; answers HTTP 200 with
  ``{"status": 0, "body": {"updatetime", "timezone", "measuregrps", "more", "offset"}}``.  Every
  error is HTTP 200 too, with a non-zero ``status``: 401 for a bad token, 503 for invalid params.
* ``POST /v2/oauth2`` with ``action=requesttoken``: client id and secret in the form; answers
  ``{"status": 0, "body": {"userid", "access_token", "refresh_token", "expires_in", ...}}``;
  refresh tokens rotate, and a spent one gets ``{"status": 503, "error": "Invalid Params: ..."}``.

Faults are ``tests.fakes.server.Fault``s; a body-status fault is
``Fault(status=200, body={"status": 601, ...})``.  It runs on its own thread and loop.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import ClassVar

from aiohttp import web

from tests.fakes.server import GRANTS, Doc, OAuthAccount, OAuthServer


@dataclass
class Account(OAuthAccount):
    token_prefix: ClassVar[str] = "withings"
    token_lifetime: ClassVar[timedelta] = timedelta(hours=3)

    userid: int = field(default_factory=lambda: 1_000_000 + secrets.randbelow(10**6))
    groups: list[Doc] = field(default_factory=list)
    page_size: int = 100

    @classmethod
    def new_token(cls, kind: str) -> str:
        return f"{cls.token_prefix}-{kind}-{secrets.token_hex(16)}"


class FakeWithings(OAuthServer[Account]):
    name = "Withings"

    def __init__(self, client_id: str = "cb-withings-client", client_secret: str = "cb-withings-secret") -> None:
        super().__init__(Account, client_id, client_secret)

    def env(self) -> dict[str, str]:
        return {
            "WITHINGS_API_BASE": self.url,
            "WITHINGS_TOKEN_URL": f"{self.url}/v2/oauth2",
            "WITHINGS_CLIENT_ID": self.client_id,
            "WITHINGS_CLIENT_SECRET": self.client_secret,
        }

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/measure", self._measure)
        app.router.add_post("/v2/oauth2", self._token)

    async def _measure(self, request: web.Request) -> web.StreamResponse:
        form = {k: str(v) for k, v in (await request.post()).items()}
        account = self.bearer(request)
        if account is None:
            return _status(401, "XRequestID: Not provided invalid_token: The access token provided is invalid")
        account.record(request, form)
        if (early := await account.play(request)) is not None:
            return early
        if form.get("action") != "getmeas":
            return _status(2554, "Not implemented")
        try:
            types = {int(t) for t in form["meastypes"].split(",")}
            start, end = int(form["startdate"]), int(form["enddate"])
            category = int(form.get("category", "1"))
            offset = int(form.get("offset", "0"))
        except (KeyError, ValueError):
            return _status(503, "Invalid Params")
        found = [
            g | {"measures": [m for m in g["measures"] if m["type"] in types]}
            for g in account.groups
            if start <= g["date"] <= end and g["category"] == category
        ]
        found = [g for g in found if g["measures"]]
        page = found[offset : offset + account.page_size]
        more = offset + account.page_size < len(found)
        body = {"updatetime": int(datetime.now(UTC).timestamp()), "timezone": "Europe/Paris", "measuregrps": page,
                "more": int(more), "offset": offset + len(page) if more else 0}  # fmt: skip
        return web.json_response({"status": 0, "body": body})

    async def _token(self, request: web.Request) -> web.StreamResponse:
        form = await self.token_form(request)
        if form.get("action") != "requesttoken":
            return _status(2554, "Not implemented")
        if not self.client_matches(form):
            return _status(503, "Invalid Params: invalid client_id or client_secret")
        if form.get("grant_type") not in GRANTS:
            return _status(503, "Invalid Params: invalid grant_type")
        account = self.granted(form)
        if account is not None and (early := await account.play(request, token=True)) is not None:
            return early
        if account is None or account.revoked:
            refresh = form["grant_type"] == "refresh_token"
            return _status(503, "Invalid Params: invalid refresh_token" if refresh else "Invalid Params: invalid code")
        account.rotate()
        body = {
            "userid": account.userid,
            "access_token": account.access_token,
            "refresh_token": account.refresh_token,
            "expires_in": 10800,
            "scope": "user.metrics",
            "csrf_token": secrets.token_urlsafe(24),
            "token_type": "Bearer",
        }
        return web.json_response({"status": 0, "body": body})


def _status(status: int, error: str) -> web.Response:
    # Withings reports failures in the body, under HTTP 200.
    return web.json_response({"status": status, "body": {}, "error": error})


# -- measure groups in Withings' shape -------------------------------------------------------


def group(at: datetime, *measures: tuple[int, int, int], category: int = 1, attrib: int = 0) -> Doc:
    """A measure group at ``at`` of (type, value, unit) measures."""
    stamp = int(at.timestamp())
    return {
        "grpid": secrets.randbelow(10**10),
        "attrib": attrib,
        "date": stamp,
        "created": stamp + 60,
        "modified": stamp + 60,
        "category": category,
        "deviceid": "c405eb8e0e053f6601e151c7e43c04e29aad6956",
        "hash_deviceid": "c405eb8e0e053f6601e151c7e43c04e29aad6956",
        "measures": [{"value": v, "type": t, "unit": u, "algo": 0, "fm": 3} for t, v, u in measures],
        "modelid": 44,
        "model": "BPM Core",
        "comment": None,
    }


def weigh_in(at: datetime, grams: int = 72_300) -> Doc:
    # Fat ratio (6) rides along on a scale's group and is not one of ours.
    return group(at, (1, grams, -3), (6, 2150, -2))


def blood_pressure(at: datetime, systolic: int = 121, diastolic: int = 79, pulse: int = 64) -> Doc:
    return group(at, (9, diastolic, 0), (10, systolic, 0), (11, pulse, 0))


def thermometer(at: datetime, millidegrees: int = 36_800, skin: int = 33_100) -> Doc:
    return group(at, (71, millidegrees, -3), (73, skin, -3))


def oximeter(at: datetime, percent: int = 97) -> Doc:
    return group(at, (54, percent, 0))
