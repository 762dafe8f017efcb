"""A local Oura API v2, speaking the documented format, with faults a test can program.

Follows https://cloud.ouraring.com/v2/docs ("Data Access", "Personal Info Routes") and
https://cloud.ouraring.com/docs/authentication:

* ``GET /v2/usercollection/{collection}``: bearer token; ``start_date``/``end_date`` (days,
  both inclusive) or, for ``heartrate``, ``start_datetime``/``end_datetime``; at most 30 days;
  ``{"data": [...], "next_token": ...}`` pages; errors as RFC 7807 ``{"status", "title", "detail"}``.
* ``GET /v2/usercollection/personal_info``: one object ``{"id", "age", "weight", "height",
  "biological_sex", "email"}``, not a page; any token reads ``id``, the rest are null without
  the ``personal`` and ``email`` scopes (which CareBeacon does not ask for).
* ``POST /oauth/token``: form-encoded ``authorization_code`` and ``refresh_token`` grants,
  client credentials in the form or by HTTP Basic; refresh tokens are single-use and rotate
  (the old access token dies with them); errors as RFC 6749 ``{"error", "error_description"}``.

Each account has its own tokens, documents, request log and fault queue, so tests (and the
worker running them) can share one server.  It runs on its own thread and event loop, so it
answers the Dramatiq worker whether or not the test's loop is running.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar

from aiohttp import web

from tests.fakes.server import GRANTS, Doc, OAuthAccount, OAuthServer

MAX_RANGE = timedelta(days=30)


@dataclass
class Account(OAuthAccount):
    token_prefix: ClassVar[str] = "oura"

    # Oura's user ids are UUID strings; webhooks carry the same one.
    oura_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    documents: dict[str, list[Doc]] = field(default_factory=dict)
    page_size: int = 50
    refreshes: int = 0


class FakeOura(OAuthServer[Account]):
    name = "Oura"

    def __init__(self, client_id: str = "cb-test-client", client_secret: str = "cb-test-secret") -> None:
        super().__init__(Account, client_id, client_secret)

    def env(self) -> dict[str, str]:
        """What a worker needs to use this server as Oura."""
        return {
            "OURA_API_BASE": self.url,
            "OURA_TOKEN_URL": f"{self.url}/oauth/token",
            "OURA_CLIENT_ID": self.client_id,
            "OURA_CLIENT_SECRET": self.client_secret,
        }

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v2/usercollection/personal_info", self._personal_info)
        app.router.add_get("/v2/usercollection/{collection}", self._collection)
        app.router.add_post("/oauth/token", self._token)

    async def _personal_info(self, request: web.Request) -> web.StreamResponse:
        account = self.bearer(request)
        if account is None:
            return _problem(401, "Unauthorized", "Invalid access token")
        account.record(request)
        if (early := await account.play(request)) is not None:
            return early
        unscoped = dict.fromkeys(("age", "weight", "height", "biological_sex", "email"))
        return web.json_response({"id": account.oura_id} | unscoped)

    async def _collection(self, request: web.Request) -> web.StreamResponse:
        account = self.bearer(request)
        if account is None:
            return _problem(401, "Unauthorized", "Invalid access token")
        account.record(request)
        if (early := await account.play(request)) is not None:
            return early
        collection = request.match_info["collection"]
        try:
            docs = _select(collection, account.documents.get(collection, []), request.query)
            offset = int(base64.urlsafe_b64decode(request.query["next_token"])) if "next_token" in request.query else 0
        except (KeyError, ValueError) as exc:
            return _problem(400, "Bad Request", str(exc))
        page = docs[offset : offset + account.page_size]
        more = offset + account.page_size < len(docs)
        next_token = base64.urlsafe_b64encode(str(offset + account.page_size).encode()).decode() if more else None
        return web.json_response({"data": page, "next_token": next_token})

    async def _token(self, request: web.Request) -> web.StreamResponse:
        form = await self.token_form(request)
        if not self.client_matches(form, request):  # in the form or by HTTP Basic
            return _oauth_error(401, "invalid_client", "Client authentication failed")
        if form.get("grant_type") not in GRANTS:
            return _oauth_error(400, "unsupported_grant_type", "Unsupported grant type")
        account = self.granted(form)
        if account is not None and (early := await account.play(request, token=True)) is not None:
            return early
        if account is None or account.revoked:
            return _oauth_error(400, "invalid_grant", "Token already used or revoked")
        account.refreshes += form["grant_type"] == "refresh_token"
        account.rotate()
        return web.json_response(
            {
                "token_type": "bearer",
                "access_token": account.access_token,
                "expires_in": 86400,
                "refresh_token": account.refresh_token,
            }
        )


def _select(collection: str, docs: list[Doc], query: Any) -> list[Doc]:
    """The documents a query asks for; raises KeyError or ValueError for a malformed one."""
    if collection == "heartrate":
        start = datetime.fromisoformat(query["start_datetime"])
        end = datetime.fromisoformat(query["end_datetime"])
        _check_range(end - start)
        return [d for d in docs if start <= datetime.fromisoformat(d["timestamp"]) <= end]
    first, last = date.fromisoformat(query["start_date"]), date.fromisoformat(query["end_date"])
    _check_range(last - first)
    return [d for d in docs if first <= date.fromisoformat(d["day"]) <= last]


def _check_range(span: timedelta) -> None:
    if span < timedelta(0) or span > MAX_RANGE:
        raise ValueError("Start and end must be ordered and at most 30 days apart")


def _problem(status: int, title: str, detail: str) -> web.Response:
    return web.json_response({"status": status, "title": title, "detail": detail}, status=status)


def _oauth_error(status: int, error: str, description: str) -> web.Response:
    body = {"status": status, "title": error, "error": error, "error_description": description}
    return web.json_response(body, status=status)


# -- documents in Oura's shapes -------------------------------------------------------------

OFFSET = "+02:00"  # the wearer's zone: Oura writes local times with their offset


def activity(day: date, steps: int | None = 8000, active_calories: int | None = 420) -> Doc:
    return {
        "id": f"act-{day}",
        "day": day.isoformat(),
        "timestamp": f"{day}T04:00:00.000{OFFSET}",
        "score": 80,
        "steps": steps,
        "active_calories": active_calories,
        "total_calories": 2300,
    }


def sleep(day: date, kind: str | None = "long_sleep", **overrides: Any) -> Doc:
    doc = {
        "id": f"sleep-{day}-{kind}",
        "day": day.isoformat(),
        "type": kind,
        "bedtime_start": f"{day - timedelta(days=1)}T23:12:00{OFFSET}",
        "bedtime_end": f"{day}T07:12:00{OFFSET}",
        "time_in_bed": 28800,
        "total_sleep_duration": 27000,
        "efficiency": 91,
        "deep_sleep_duration": 5400,
        "rem_sleep_duration": 6300,
        "light_sleep_duration": 15300,
        "awake_time": 1800,
        "lowest_heart_rate": 52,
        "average_hrv": 48,
        "average_breath": 14.5,
    }
    return doc | overrides


def spo2(day: date, average: float | None = 97.4) -> Doc:
    return {"id": f"spo2-{day}", "day": day.isoformat(), "spo2_percentage": {"average": average}}


def readiness(day: date, temperature_deviation: float | None = -0.12) -> Doc:
    return {
        "id": f"ready-{day}",
        "day": day.isoformat(),
        "timestamp": f"{day}T00:00:00.000{OFFSET}",
        "score": 78,
        "temperature_deviation": temperature_deviation,
    }


def heartrate(at: datetime, bpm: int = 61, source: str = "awake") -> Doc:
    return {"bpm": bpm, "source": source, "timestamp": at.astimezone(UTC).isoformat()}


# Items per day from ``documents``: 2 activity + 6 sleep + 1 SpO2 + 1 readiness + 3 heart-rate
# readings, and one sleep session.
ITEMS_PER_DAY = 14


def documents(days: Iterable[date]) -> dict[str, list[Doc]]:
    """A plausible account: every collection filled for each day, three heart-rate samples a day."""
    found: dict[str, list[Doc]] = {"daily_activity": [], "sleep": [], "daily_spo2": [], "daily_readiness": []}
    found["heartrate"] = []
    for day in days:
        found["daily_activity"].append(activity(day, steps=8000 + day.day))
        found["sleep"].append(sleep(day))
        found["daily_spo2"].append(spo2(day))
        found["daily_readiness"].append(readiness(day))
        start = datetime(day.year, day.month, day.day, 6, tzinfo=UTC)
        found["heartrate"] += [heartrate(start + timedelta(minutes=5 * i), 60 + i) for i in range(3)]
    return found
