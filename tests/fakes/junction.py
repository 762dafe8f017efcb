"""A local Junction (Vital) Data Access API, speaking the documented format, with faults a test can program.

Follows https://docs.junction.com/api-details/junction-api (the ``X-Vital-API-Key`` team key),
https://docs.junction.com/api-details/rate_limiting (429 or 503 under load), and the API
reference pages for "Get sleep summary", "Get activity summary" and the grouped timeseries
(``/v2/timeseries/{user_id}/{resource}/grouped``), as the generated vital-python client
encodes them:

* every request needs ``X-Vital-API-Key``; without the right one: 401 ``{"detail": ...}``;
* ``GET /v2/summary/{sleep,activity}/{user_id}?start_date=&end_date=&provider=``: dates
  ``YYYY-MM-DD`` (the end date runs to 23:59:59) or ISO times; answers ``{"sleep": [...]}`` or
  ``{"activity": [...]}`` (summaries whose ``calendar_date`` is in range), with no pages;
* ``GET /v2/timeseries/{user_id}/{heartrate,glucose}/grouped?start_date=&end_date=&provider=
  &cursor=``: ``{"groups": {slug: [{"source": {...}, "data": [samples]}]}, "next_cursor"}``,
  ``page_size`` samples a page, the cursor opaque;
* ``GET /v2/user/resolve/{client_user_id}`` (404 when unknown), ``POST /v2/user``
  ``{"client_user_id"}`` (400 when taken) and ``POST /v2/link/token`` ``{"user_id",
  "redirect_url"?, "filter_on_providers"?}`` answering ``{"link_token", "link_web_url"}``
  (the "Create user", "Resolve user" and "Generate a link token" reference pages);
* a missing ``start_date`` is FastAPI's 422 ``{"detail": [{"loc", "msg", "type"}]}``; an unknown
  user is 404 ``{"detail": "User not found"}``.

Faults are ``tests.fakes.server.Fault``s, played on the next data requests of a user.  It runs on
its own thread and loop.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from aiohttp import web

from tests.fakes.server import Doc, Fault, Received, ThreadedServer, apply_fault

SUMMARIES = ("sleep", "activity")
TIMESERIES = ("heartrate", "glucose")


@dataclass
class User:
    """One Junction user: summaries and samples by source slug, requests made, faults queued."""

    user_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    client_user_id: str = field(default_factory=lambda: f"cb-{uuid.uuid4().hex[:8]}")
    summaries: dict[str, list[Doc]] = field(default_factory=lambda: {r: [] for r in SUMMARIES})
    samples: dict[str, dict[str, list[Doc]]] = field(default_factory=lambda: {r: {} for r in TIMESERIES})
    faults: list[Fault] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)

    def fail(self, count: int = 1, **fault: Any) -> None:
        self.faults.extend(Fault(**fault) for _ in range(count))

    def received(self, resource: str) -> list[Received]:
        return [r for r in self.requests if f"/{resource}/" in r.path or r.path.endswith(f"/{resource}")]


class FakeJunction(ThreadedServer):
    name = "Junction"

    def __init__(self, api_key: str = "sk_us_fake_team_key", page_size: int = 100) -> None:
        super().__init__()
        self.api_key = api_key
        self.page_size = page_size
        self.users: dict[str, User] = {}
        self.link_requests: list[Doc] = []

    def env(self) -> dict[str, str]:
        """What a worker needs to use this server as Junction."""
        return {"JUNCTION_API_BASE": self.url, "JUNCTION_API_KEY": self.api_key}

    def add_user(self) -> User:
        user = User()
        self.users[user.user_id] = user
        return user

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v2/summary/{resource}/{user_id}", self._summary)
        app.router.add_get("/v2/timeseries/{user_id}/{resource}/grouped", self._timeseries)
        app.router.add_get("/v2/user/resolve/{client_user_id}", self._resolve)
        app.router.add_post("/v2/user", self._create_user)
        app.router.add_post("/v2/link/token", self._link_token)

    def _by_client_id(self, client_user_id: str) -> User | None:
        return next((u for u in list(self.users.values()) if u.client_user_id == client_user_id), None)

    def _refused(self, request: web.Request) -> web.StreamResponse | None:
        if request.headers.get("X-Vital-API-Key") != self.api_key:
            return web.json_response({"detail": "Invalid API key"}, status=401)
        return None

    async def _resolve(self, request: web.Request) -> web.StreamResponse:
        if (refused := self._refused(request)) is not None:
            return refused
        user = self._by_client_id(request.match_info["client_user_id"])
        if user is None:
            return web.json_response({"detail": "User not found"}, status=404)
        return web.json_response(_user_doc(user))

    async def _create_user(self, request: web.Request) -> web.StreamResponse:
        if (refused := self._refused(request)) is not None:
            return refused
        client_user_id = (await request.json()).get("client_user_id")
        if not isinstance(client_user_id, str) or not client_user_id:
            missing = [{"loc": ["body", "client_user_id"], "msg": "field required", "type": "value_error.missing"}]
            return web.json_response({"detail": missing}, status=422)
        if self._by_client_id(client_user_id) is not None:
            return web.json_response({"detail": "Client user id already exists."}, status=400)
        user = self.add_user()
        user.client_user_id = client_user_id
        return web.json_response(_user_doc(user))

    async def _link_token(self, request: web.Request) -> web.StreamResponse:
        if (refused := self._refused(request)) is not None:
            return refused
        body = await request.json()
        self.link_requests.append(body)
        if body.get("user_id") not in self.users:
            return web.json_response({"detail": "User not found"}, status=404)
        token = uuid.uuid4().hex
        return web.json_response({"link_token": token, "link_web_url": f"{self.url}/link?token={token}"})

    async def _admit(
        self, request: web.Request, resources: tuple[str, ...]
    ) -> tuple[str, User, datetime, datetime] | web.StreamResponse:
        """The resource, user and time range of a data request, or the error answer it gets."""
        resource = request.match_info["resource"]
        if resource not in resources:
            return web.json_response({"detail": "Not Found"}, status=404)
        if (refused := self._refused(request)) is not None:
            return refused
        user = self.users.get(request.match_info["user_id"])
        if user is None:
            return web.json_response({"detail": "User not found"}, status=404)
        user.requests.append(Received.of(request))
        if user.faults and (early := await apply_fault(user.faults.pop(0), request, _detail)) is not None:
            return early
        if "start_date" not in request.query:
            missing = [{"loc": ["query", "start_date"], "msg": "field required", "type": "value_error.missing"}]
            return web.json_response({"detail": missing}, status=422)
        try:
            start = _when(request.query["start_date"], time(0))
            end = _when(request.query.get("end_date", datetime.now(UTC).date().isoformat()), time(23, 59, 59))
        except ValueError:
            return web.json_response({"detail": "start_date and end_date must be dates or ISO times"}, status=400)
        return resource, user, start, end

    async def _summary(self, request: web.Request) -> web.StreamResponse:
        admitted = await self._admit(request, SUMMARIES)
        if isinstance(admitted, web.StreamResponse):
            return admitted
        resource, user, start, end = admitted
        provider = request.query.get("provider")
        found = [
            doc
            for doc in user.summaries[resource]
            if start.date() <= date.fromisoformat(doc["calendar_date"]) <= end.date()
            and provider in (None, doc["source"]["provider"])
        ]
        return web.json_response({resource: found})

    async def _timeseries(self, request: web.Request) -> web.StreamResponse:
        admitted = await self._admit(request, TIMESERIES)
        if isinstance(admitted, web.StreamResponse):
            return admitted
        resource, user, start, end = admitted
        provider = request.query.get("provider")
        flat = [
            (slug, sample)
            for slug, samples in sorted(user.samples[resource].items())
            if provider in (None, slug)
            for sample in samples
            if start <= _sample_time(sample) <= end
        ]
        offset = _offset(request.query.get("cursor"))
        page, rest = flat[offset : offset + self.page_size], flat[offset + self.page_size :]
        groups: dict[str, list[Doc]] = {}
        for slug, sample in page:
            if slug not in groups:
                groups[slug] = [{"source": source(slug), "data": []}]
            groups[slug][0]["data"].append(sample)
        cursor = _cursor(offset + self.page_size) if rest else None
        return web.json_response({"groups": groups, "next": cursor, "next_cursor": cursor})


def _user_doc(user: User) -> Doc:
    return {"user_id": user.user_id, "client_user_id": user.client_user_id, "team_id": "team-fake",
            "created_on": "2026-01-05T10:00:00+00:00", "connected_sources": []}  # fmt: skip


def _detail(status: int) -> Any:
    return {"detail": f"fake fault {status}"}


def _when(text: str, default: time) -> datetime:
    if len(text) == 10:
        return datetime.combine(date.fromisoformat(text), default, tzinfo=UTC)
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _sample_time(sample: Doc) -> datetime:
    try:
        return datetime.fromisoformat(sample["timestamp"])
    except (TypeError, ValueError, KeyError):
        return datetime.min.replace(tzinfo=UTC)  # a broken sample is out of every range


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode()


def _offset(cursor: str | None) -> int:
    return int(json.loads(base64.urlsafe_b64decode(cursor))["o"]) if cursor else 0


# -- documents, as the API reference shows them ------------------------------------------------


def source(slug: str) -> Doc:
    names = {"oura": "Oura", "freestyle_libre": "Freestyle Libre", "whoop_v2": "WHOOP"}
    return {"provider": slug, "type": "unknown", "app_id": None, "name": names.get(slug, slug), "slug": slug,
            "logo": f"https://storage.googleapis.com/vital-assets/{slug}.png"}  # fmt: skip


def sleep(user: User, start: datetime, hours: float = 8.0, *, slug: str = "oura", **fields: Any) -> Doc:
    """A sleep summary of ``hours`` in bed from ``start``: 90 % asleep, a quarter of it deep."""
    stop = start + timedelta(hours=hours)
    in_bed = int(hours * 3600)
    total = int(in_bed * 0.9)
    doc = {
        "user_id": user.user_id, "id": str(uuid.uuid4()), "date": f"{stop.date()}T00:00:00+00:00",
        "calendar_date": stop.date().isoformat(), "bedtime_start": start.isoformat(),
        "bedtime_stop": stop.isoformat(), "type": "long_sleep", "timezone_offset": 3600,
        "duration": in_bed, "total": total, "awake": in_bed - total, "light": total // 2,
        "rem": total - total // 2 - total // 4, "deep": total // 4, "score": 81, "hr_lowest": 52,
        "hr_average": 58, "efficiency": 90.0, "latency": 600, "temperature_delta": -0.2,
        "skin_temperature": None, "hr_dip": None, "state": None, "average_hrv": 48.5,
        "respiratory_rate": 14.2, "source": source(slug), "sleep_stream": None,
    }  # fmt: skip
    return doc | fields


def activity(user: User, day: date, *, slug: str = "oura", **fields: Any) -> Doc:
    doc = {
        "user_id": user.user_id, "id": str(uuid.uuid4()), "date": f"{day}T00:00:00+00:00",
        "calendar_date": day.isoformat(), "calories_total": 2300.0, "calories_active": 420.5,
        "steps": 8123, "daily_movement": 6200.0, "distance": 6200.0, "low": 3600.0, "medium": 1800.0,
        "high": 600.0, "source": source(slug), "floors_climbed": 4, "time_zone": "Europe/Paris",
        "timezone_offset": 3600, "heart_rate": {"avg_bpm": 71, "min_bpm": 50, "max_bpm": 150, "resting_bpm": 54},
    }  # fmt: skip
    return doc | fields


def sample(at: datetime, value: Any, unit: str) -> Doc:
    return {
        "id": None,
        "timezone_offset": 3600,
        "type": None,
        "unit": unit,
        "timestamp": at.isoformat(),
        "value": value,
    }


def every_five_minutes(start: datetime, count: int, value: float, unit: str) -> list[Doc]:
    return [sample(start + timedelta(minutes=5 * i), value, unit) for i in range(count)]
