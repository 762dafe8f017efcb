"""A local WHOOP API v2, speaking the documented format, with faults a test can program.

Follows https://developer.whoop.com/api (v2 collections), /docs/developing/oauth,
/docs/developing/rate-limiting and /docs/tutorials/refresh-token-javascript:

* ``GET /developer/v2/{recovery,cycle,activity/sleep,activity/workout}``: bearer token;
  ``limit`` (at most 25, default 10), ``start`` (inclusive) and ``end`` (exclusive) ISO 8601,
  ``nextToken``; ``{"records": [...], "next_token": ...}``, newest first; every answer carries
  ``X-RateLimit-Limit/-Remaining/-Reset``.
* ``GET /developer/v2/user/profile/basic``: ``{"user_id", "email", "first_name", "last_name"}``.
* ``POST /oauth/oauth2/token``: form-encoded ``authorization_code`` and ``refresh_token`` grants
  with the client id and secret in the form; a refresh token comes back only when ``offline``
  is asked for, and each refresh spends the old one; errors as RFC 6749 JSON.

Faults are ``tests.fakes.server.Fault``s.  It runs on its own thread and loop.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar

from aiohttp import web

from tests.fakes.server import GRANTS, Doc, OAuthAccount, OAuthServer, apply_fault

COLLECTIONS = {"recovery": "recovery", "cycle": "cycle", "activity/sleep": "sleep", "activity/workout": "workout"}
RATE_HEADERS = {"X-RateLimit-Limit": "100, 100;window=60, 10000;window=86400", "X-RateLimit-Remaining": "98"}


@dataclass
class Account(OAuthAccount):
    token_prefix: ClassVar[str] = "whoop"

    user_id: int = field(default_factory=lambda: secrets.randbelow(10**6))
    records: dict[str, list[Doc]] = field(default_factory=dict)
    page_size: int = 25


class FakeWhoop(OAuthServer[Account]):
    name = "WHOOP"

    def __init__(self, client_id: str = "cb-whoop-client", client_secret: str = "cb-whoop-secret") -> None:
        super().__init__(Account, client_id, client_secret)

    def env(self) -> dict[str, str]:
        return {
            "WHOOP_API_BASE": f"{self.url}/developer",
            "WHOOP_TOKEN_URL": f"{self.url}/oauth/oauth2/token",
            "WHOOP_CLIENT_ID": self.client_id,
            "WHOOP_CLIENT_SECRET": self.client_secret,
        }

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/developer/v2/user/profile/basic", self._profile)
        app.router.add_get("/developer/v2/{collection:.+}", self._collection)
        app.router.add_post("/oauth/oauth2/token", self._token)

    async def _profile(self, request: web.Request) -> web.StreamResponse:
        account = self.bearer(request)
        if account is None:
            return _error(401, "Authorization was not valid")
        body = {"user_id": account.user_id, "email": f"{account.name}@example.com", "first_name": "A", "last_name": "B"}
        return web.json_response(body, headers=RATE_HEADERS)

    async def _collection(self, request: web.Request) -> web.StreamResponse:
        account = self.bearer(request)
        if account is None:
            return _error(401, "Authorization was not valid")
        account.record(request)
        if account.faults:
            fault = account.faults.pop(0)
            if fault.status == 429 and fault.body is None and not fault.delay and not fault.drop:
                headers = {**RATE_HEADERS, "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "42"}
                if fault.retry_after is not None:
                    headers["Retry-After"] = fault.retry_after
                return web.json_response({"message": "Too Many Requests"}, status=429, headers=headers)
            if (early := await apply_fault(fault, request)) is not None:
                return early
        name = COLLECTIONS.get(request.match_info["collection"])
        if name is None:
            return _error(404, "No resource found")
        try:
            docs = _select(account.records.get(name, []), request.query)
            limit = int(request.query.get("limit", "10"))
            offset = int(base64.b64decode(request.query["nextToken"])) if "nextToken" in request.query else 0
        except (KeyError, ValueError) as exc:
            return _error(400, f"Client error constructing the request: {exc}")
        if not 1 <= limit <= 25:
            return _error(400, "limit must be between 1 and 25")
        size = min(limit, account.page_size)
        more = offset + size < len(docs)
        body: Doc = {"records": docs[offset : offset + size]}
        if more:
            body["next_token"] = base64.b64encode(str(offset + size).encode()).decode()
        return web.json_response(body, headers=RATE_HEADERS)

    async def _token(self, request: web.Request) -> web.StreamResponse:
        form = await self.token_form(request)
        if not self.client_matches(form):
            return _oauth_error(401, "invalid_client", "Client authentication failed")
        if form.get("grant_type") not in GRANTS:
            return _oauth_error(400, "unsupported_grant_type", "The grant type is not supported")
        account = self.granted(form)
        if account is not None and (early := await account.play(request, token=True)) is not None:
            return early
        if account is None or account.revoked:
            return _oauth_error(400, "invalid_grant", "The provided authorization grant is invalid or expired")
        offline = "offline" in form.get("scope", "offline").split()
        account.rotate(refresh=offline)
        body = {"access_token": account.access_token, "expires_in": 3600, "token_type": "bearer", "scope": ""}
        if offline:
            body["refresh_token"] = account.refresh_token
        return web.json_response(body)


def _select(docs: list[Doc], query: Any) -> list[Doc]:
    """Records starting in [start, end), newest first; raises ValueError for a bad time."""
    start = datetime.fromisoformat(query["start"]) if "start" in query else None
    end = datetime.fromisoformat(query["end"]) if "end" in query else datetime.now(UTC)
    found = [d for d in docs if (start is None or start <= _start(d)) and _start(d) < end]
    return sorted(found, key=_start, reverse=True)


def _start(doc: Doc) -> datetime:
    # A recovery has no start of its own: WHOOP matches it by its sleep, here by when it was scored.
    return datetime.fromisoformat(doc.get("start") or doc["created_at"])


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status)


def _oauth_error(status: int, error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=status)


# -- records in WHOOP's v2 shapes ------------------------------------------------------------


def _z(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def sleep(day: date, *, nap: bool = False, score_state: str = "SCORED", **score: Any) -> Doc:
    """The night ending on ``day`` at 06:30 UTC, 8 h long."""
    end = datetime(day.year, day.month, day.day, 6, 30, tzinfo=UTC)
    stages = {
        "total_in_bed_time_milli": 28_800_000,
        "total_awake_time_milli": 1_800_000,
        "total_no_data_time_milli": 0,
        "total_light_sleep_time_milli": 14_400_000,
        "total_slow_wave_sleep_time_milli": 6_000_000,
        "total_rem_sleep_time_milli": 6_600_000,
        "sleep_cycle_count": 4,
        "disturbance_count": 9,
    }
    stages |= score.pop("stages", {})
    body = {
        "stage_summary": stages,
        "sleep_needed": {"baseline_milli": 27_000_000, "need_from_sleep_debt_milli": 0,
                         "need_from_recent_strain_milli": 0, "need_from_recent_nap_milli": 0},
        "respiratory_rate": 15.5,
        "sleep_performance_percentage": 96.0,
        "sleep_consistency_percentage": 88.0,
        "sleep_efficiency_percentage": 93.75,
    } | score  # fmt: skip
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"sleep-{day}-{nap}")),
        "cycle_id": day.toordinal(),
        "user_id": 10129,
        "created_at": _z(end + timedelta(minutes=20)),
        "updated_at": _z(end + timedelta(minutes=30)),
        "start": _z(end - timedelta(hours=8)),
        "end": _z(end),
        "timezone_offset": "-05:00",
        "nap": nap,
        "score_state": score_state,
        **({"score": body} if score_state == "SCORED" else {}),
    }


def recovery(day: date, *, score_state: str = "SCORED", **score: Any) -> Doc:
    scored_at = datetime(day.year, day.month, day.day, 7, tzinfo=UTC)
    body = {
        "user_calibrating": False,
        "recovery_score": 44.0,
        "resting_heart_rate": 64.0,
        "hrv_rmssd_milli": 31.813562,
        "spo2_percentage": 95.6875,
        "skin_temp_celsius": 33.7,
    } | score
    return {
        "cycle_id": day.toordinal(),
        "sleep_id": sleep(day)["id"],
        "user_id": 10129,
        "created_at": _z(scored_at),
        "updated_at": _z(scored_at),
        "score_state": score_state,
        **({"score": body} if score_state == "SCORED" else {}),
    }


def cycle(day: date, *, score_state: str = "SCORED", **score: Any) -> Doc:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC) - timedelta(hours=1, minutes=30)
    body = {"strain": 12.5, "kilojoule": 8288.297, "average_heart_rate": 68, "max_heart_rate": 141} | score
    return {
        "id": day.toordinal(),
        "user_id": 10129,
        "created_at": _z(start),
        "updated_at": _z(start + timedelta(hours=20)),
        "start": _z(start),
        "end": _z(start + timedelta(days=1)),
        "timezone_offset": "-05:00",
        "score_state": score_state,
        **({"score": body} if score_state == "SCORED" else {}),
    }


def workout(day: date, *, score_state: str = "SCORED", sport_name: str | None = "running", **score: Any) -> Doc:
    start = datetime(day.year, day.month, day.day, 17, tzinfo=UTC)
    body = {
        "strain": 8.2463,
        "average_heart_rate": 123,
        "max_heart_rate": 146,
        "kilojoule": 1569.34,
        "percent_recorded": 100.0,
        "distance_meter": 1772.77,
        "altitude_gain_meter": 46.6,
        "altitude_change_meter": -0.78,
        "zone_durations": {"zone_zero_milli": 0, "zone_one_milli": 0, "zone_two_milli": 0,
                           "zone_three_milli": 0, "zone_four_milli": 112000, "zone_five_milli": 288000},
    } | score  # fmt: skip
    doc: Doc = {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"workout-{day}")),
        "user_id": 10129,
        "created_at": _z(start + timedelta(hours=1)),
        "updated_at": _z(start + timedelta(hours=1)),
        "start": _z(start),
        "end": _z(start + timedelta(minutes=45)),
        "timezone_offset": "-05:00",
        "sport_name": sport_name,
        "sport_id": 0,
        "score_state": score_state,
    }
    return doc | ({"score": body} if score_state == "SCORED" else {})


# Per day from ``records``: a night (session + 5 readings), a recovery (4 readings), a cycle's
# strain, and a workout session.
ITEMS_PER_DAY = 12


def records(days: list[date]) -> dict[str, list[Doc]]:
    return {
        "sleep": [sleep(d) for d in days],
        "recovery": [recovery(d) for d in days],
        "cycle": [cycle(d) for d in days],
        "workout": [workout(d) for d in days],
    }
