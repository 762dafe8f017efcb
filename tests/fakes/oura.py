"""A local Oura API v2, speaking the documented format, with faults a test can program.

* ``GET /v2/usercollection/{collection}``: bearer token; ``start_date``/``end_date`` (days,
  both inclusive) or, for ``heartrate``, ``start_datetime``/``end_datetime``; at most 30 days;
  ``{"data": [...], "next_token": ...}`` pages; errors as RFC 7807 ``{"status", "title", "detail"}``.
* ``POST /oauth/token``: form-encoded ``authorization_code`` and ``refresh_token`` grants,
  client credentials in the form or by HTTP Basic; refresh tokens are single-use and rotate
  (the old access token dies with them); errors as RFC 6749 ``{"error", "error_description"}``.

Each account has its own tokens, documents, request log and fault queue, so tests (and the
worker running them) can share one server.  It runs on its own thread and event loop, so it
answers the Dramatiq worker whether or not the test's loop is running.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from aiohttp import BasicAuth, web

Doc = dict[str, Any]
MAX_RANGE = timedelta(days=30)


@dataclass
class Fault:
    """What the next matching request gets instead of its answer."""

    status: int = 503
    retry_after: str | None = None
    delay: float = 0.0  # answer normally, but only after this many seconds
    drop: bool = False  # close the connection without answering
    body: dict[str, Any] | None = None


@dataclass(frozen=True)
class Received:
    path: str
    query: dict[str, str]
    at: float = field(default_factory=time.monotonic)


@dataclass
class Account:
    name: str
    access_token: str = field(default_factory=lambda: f"oura-at-{secrets.token_urlsafe(16)}")
    refresh_token: str = field(default_factory=lambda: f"oura-rt-{secrets.token_urlsafe(16)}")
    documents: dict[str, list[Doc]] = field(default_factory=dict)
    page_size: int = 50
    revoked: bool = False
    faults: list[Fault] = field(default_factory=list)
    token_faults: list[Fault] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)
    refreshes: int = 0

    def tokens(self, expires_at: datetime | None = None) -> dict[str, Any]:
        """The token dict a connection stores; expiring in an hour unless told otherwise."""
        expires = expires_at or datetime.now(UTC) + timedelta(hours=1)
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "expires_at": expires.isoformat(),
        }

    def fail(self, count: int = 1, *, token: bool = False, **fault: Any) -> None:
        """The next ``count`` data (or token) requests of this account get ``Fault(**fault)``."""
        (self.token_faults if token else self.faults).extend(Fault(**fault) for _ in range(count))

    def received(self, collection: str) -> list[Received]:
        return [r for r in self.requests if r.path.endswith(f"/{collection}")]


class FakeOura:
    def __init__(self, client_id: str = "cb-test-client", client_secret: str = "cb-test-secret") -> None:
        self.client_id, self.client_secret = client_id, client_secret
        self.accounts: dict[str, Account] = {}
        self.token_forms: list[dict[str, str]] = []
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    def add_account(self, name: str = "", documents: dict[str, list[Doc]] | None = None, **kw: Any) -> Account:
        account = Account(name or secrets.token_hex(4), documents=documents or {}, **kw)
        self.accounts[account.name] = account
        return account

    def env(self) -> dict[str, str]:
        """What a worker needs to use this server as Oura."""
        return {
            "OURA_API_BASE": self.url,
            "OURA_TOKEN_URL": f"{self.url}/oauth/token",
            "OURA_CLIENT_ID": self.client_id,
            "OURA_CLIENT_SECRET": self.client_secret,
        }

    # -- serving ----------------------------------------------------------------------------

    def start(self) -> FakeOura:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name="fake-oura", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fake Oura server did not start")
        return self

    def stop(self) -> None:
        if self._loop is None or self._runner is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _serve(self, ready: threading.Event) -> None:
        self._loop = loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        app = web.Application()
        app.router.add_get("/v2/usercollection/{collection}", self._collection)
        app.router.add_post("/oauth/token", self._token)
        # A short shutdown: a deliberately slow answer must not hold the suite's teardown.
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
        loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        ready.set()
        loop.run_forever()
        # A handler still sleeping through a slow-answer fault: end it rather than abandon it.
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()

    # -- handlers ---------------------------------------------------------------------------

    def _accounts(self) -> list[Account]:
        # A snapshot: tests add accounts from their own thread while this one serves.
        return list(self.accounts.values())

    async def _collection(self, request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        account = next((a for a in self._accounts() if auth == f"Bearer {a.access_token}"), None)
        if account is None:
            return _problem(401, "Unauthorized", "Invalid access token")
        account.requests.append(Received(request.path, dict(request.query)))
        if account.faults:
            early = await _apply(account.faults.pop(0), request)
            if early is not None:
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
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.token_forms.append(form)
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if "Authorization" in request.headers:
            basic = BasicAuth.decode(request.headers["Authorization"])
            client_id, secret = basic.login, basic.password
        if (client_id, secret) != (self.client_id, self.client_secret):
            return _oauth_error(401, "invalid_client", "Client authentication failed")
        if form.get("grant_type") == "refresh_token":
            account = next((a for a in self._accounts() if a.refresh_token == form.get("refresh_token")), None)
        elif form.get("grant_type") == "authorization_code":
            account = self.accounts.get(form.get("code", ""))
        else:
            return _oauth_error(400, "unsupported_grant_type", "Unsupported grant type")
        if account is not None and account.token_faults:
            early = await _apply(account.token_faults.pop(0), request)
            if early is not None:
                return early
        if account is None or account.revoked:
            return _oauth_error(400, "invalid_grant", "Token already used or revoked")
        account.refreshes += form["grant_type"] == "refresh_token"
        account.access_token = f"oura-at-{secrets.token_urlsafe(16)}"
        account.refresh_token = f"oura-rt-{secrets.token_urlsafe(16)}"
        return web.json_response(
            {
                "token_type": "bearer",
                "access_token": account.access_token,
                "expires_in": 86400,
                "refresh_token": account.refresh_token,
            }
        )


async def _apply(fault: Fault, request: web.Request) -> web.StreamResponse | None:
    """Play ``fault``; returns the response to send, or None to answer normally (after a delay)."""
    if fault.delay:
        await asyncio.sleep(fault.delay)
        return None
    if fault.drop:
        assert request.transport is not None
        request.transport.close()
        return web.Response()  # never reaches the client
    headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
    body = fault.body or {"status": fault.status, "title": "Error", "detail": f"fake fault {fault.status}"}
    return web.json_response(body, status=fault.status, headers=headers)


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
