"""What the local fakes share: a threaded aiohttp server, programmable faults, OAuth accounts.

``ThreadedServer`` serves ``routes`` on its own thread and event loop, so it answers the
Dramatiq worker whether or not the test's loop is running.  ``OAuthServer`` adds the client
credentials, accounts and token-request log of the providers' fakes (oura, whoop, dexcom,
withings); ``OAuthAccount`` is an account's tokens, request log and fault queues.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Generic, Self, TypeVar

from aiohttp import BasicAuth, web

Doc = dict[str, Any]
GRANTS = ("refresh_token", "authorization_code")


@dataclass
class Fault:
    """What the next matching request gets instead of its answer."""

    status: int = 503
    retry_after: str | None = None
    delay: float = 0.0  # answer normally, but only after this many seconds
    drop: bool = False  # close the connection without answering
    body: Any = None  # JSON document (or text when a str) of the error answer
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names lower-cased
    body: bytes = b""
    at: float = field(default_factory=time.monotonic)

    @classmethod
    def of(cls, request: web.Request, query: Mapping[str, str] | None = None, body: bytes = b"") -> Received:
        """``request`` as received; ``query`` stands for its parameters when they came in a form."""
        headers = {k.lower(): v for k, v in request.headers.items()}
        return cls(request.method, request.path, dict(request.query if query is None else query), headers, body)

    def json(self) -> Any:
        return json.loads(self.body)


def problem(status: int) -> Any:
    """The default body of a fault: an RFC 7807 problem document."""
    return {"status": status, "title": "Error", "detail": f"fake fault {status}"}


async def apply_fault(
    fault: Fault, request: web.Request, default: Callable[[int], Any] = problem
) -> web.StreamResponse | None:
    """Play ``fault``; returns the response to send, or None to answer normally (after a delay)."""
    if fault.delay:
        await asyncio.sleep(fault.delay)
        return None
    if fault.drop:
        assert request.transport is not None
        request.transport.close()
        return web.Response()  # never reaches the client
    headers = fault.headers | ({"Retry-After": fault.retry_after} if fault.retry_after is not None else {})
    if isinstance(fault.body, str):
        return web.Response(text=fault.body, status=fault.status, headers=headers)
    body = fault.body if fault.body is not None else default(fault.status)
    return web.json_response(body, status=fault.status, headers=headers)


class ThreadedServer:
    """An aiohttp app on 127.0.0.1 (a free port), served by a daemon thread with its own loop."""

    name = "server"  # of the thread (lower-cased) and in errors

    def __init__(self) -> None:
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    def routes(self, app: web.Application) -> None:
        """Add the handlers to ``app``."""
        raise NotImplementedError

    def start(self) -> Self:
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._serve, args=(ready,), name=f"fake-{self.name.lower()}", daemon=True
        )
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError(f"the fake {self.name} server did not start")
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
        self.routes(app)
        # A short shutdown: a deliberately slow answer must not hold the suite's teardown.
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
        loop.run_until_complete(self._runner.setup())
        loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", 0).start())
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


# -- OAuth providers -------------------------------------------------------------------------


@dataclass
class OAuthAccount:
    """One user of a provider: tokens, the requests it made, and the faults queued for it."""

    token_prefix: ClassVar[str] = "fake"  # tokens read "{prefix}-at-…" and "{prefix}-rt-…"
    token_lifetime: ClassVar[timedelta] = timedelta(hours=1)  # of the tokens ``tokens()`` hands out

    name: str
    access_token: str = ""
    refresh_token: str = ""
    revoked: bool = False
    faults: list[Fault] = field(default_factory=list)
    token_faults: list[Fault] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.access_token = self.access_token or self.new_token("at")
        self.refresh_token = self.refresh_token or self.new_token("rt")

    @classmethod
    def new_token(cls, kind: str) -> str:
        return f"{cls.token_prefix}-{kind}-{secrets.token_urlsafe(16)}"

    def rotate(self, refresh: bool = True) -> None:
        """New tokens, as a grant hands out: the old access token dies (and the refresh token)."""
        self.access_token = self.new_token("at")
        if refresh:
            self.refresh_token = self.new_token("rt")

    def tokens(self, expires_at: datetime | None = None) -> dict[str, Any]:
        """The token dict a connection stores; expiring after ``token_lifetime`` unless told otherwise."""
        expires = expires_at or datetime.now(UTC) + self.token_lifetime
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

    def record(self, request: web.Request, query: Mapping[str, str] | None = None) -> None:
        self.requests.append(Received.of(request, query))

    async def play(self, request: web.Request, *, token: bool = False) -> web.StreamResponse | None:
        """The answer of the next queued data (or token) fault, if one is queued and answers."""
        faults = self.token_faults if token else self.faults
        return await apply_fault(faults.pop(0), request) if faults else None


A = TypeVar("A", bound=OAuthAccount)


class OAuthServer(ThreadedServer, Generic[A]):
    """A provider's API: client credentials, accounts by name, and every token request's form."""

    def __init__(self, account: type[A], client_id: str, client_secret: str) -> None:
        super().__init__()
        self.client_id, self.client_secret = client_id, client_secret
        self.account_type = account
        self.accounts: dict[str, A] = {}
        self.token_forms: list[dict[str, str]] = []

    def add_account(self, name: str = "", **kw: Any) -> A:
        account = self.account_type(name or secrets.token_hex(4), **kw)
        self.accounts[account.name] = account
        return account

    def _accounts(self) -> list[A]:
        # A snapshot: tests add accounts from their own thread while this one serves.
        return list(self.accounts.values())

    def bearer(self, request: web.Request) -> A | None:
        """The account whose access token authorizes ``request``."""
        auth = request.headers.get("Authorization", "")
        return next((a for a in self._accounts() if auth == f"Bearer {a.access_token}"), None)

    async def token_form(self, request: web.Request) -> dict[str, str]:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.token_forms.append(form)
        return form

    def client_matches(self, form: Mapping[str, str], request: web.Request | None = None) -> bool:
        """The form's client credentials are ours (or HTTP Basic ones, when ``request`` may carry them)."""
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if request is not None and "Authorization" in request.headers:
            basic = BasicAuth.decode(request.headers["Authorization"])
            client_id, secret = basic.login, basic.password
        return (client_id, secret) == (self.client_id, self.client_secret)

    def granted(self, form: Mapping[str, str]) -> A | None:
        """The account a ``refresh_token`` or ``authorization_code`` grant (one of ``GRANTS``) names."""
        if form.get("grant_type") == "refresh_token":
            return next((a for a in self._accounts() if a.refresh_token == form.get("refresh_token")), None)
        return self.accounts.get(form.get("code", ""))
