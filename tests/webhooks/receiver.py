"""An integrator's endpoint on 127.0.0.1: records each request, answers as a test programs it,
and checks signatures with the official ``standardwebhooks`` library, never with our code."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass(frozen=True)
class Got:
    headers: dict[str, str]  # names lower-cased
    body: bytes
    at: float  # time.monotonic()

    @property
    def msg_id(self) -> str:
        return self.headers["webhook-id"]

    def json(self) -> Any:
        return json.loads(self.body)

    def verifies(self, secret: str) -> bool:
        """Whether the official library accepts the request with ``secret``."""
        try:
            Webhook(secret).verify(self.body, self.headers)
        except WebhookVerificationError:
            return False
        return True


@dataclass
class Receiver:
    """Paths are independent: each test uses its own, so one server serves them all."""

    url: str = ""
    got: dict[str, list[Got]] = field(default_factory=lambda: defaultdict(list))
    # Per path, the answers to give in order (status, headers); then 200.
    plans: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=lambda: defaultdict(list))
    always: dict[str, int] = field(default_factory=dict)
    _runner: web.AppRunner | None = None

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def endpoint(self, path: str) -> str:
        return f"{self.url}/{path}"

    def answer(self, path: str, *answers: int | tuple[int, dict[str, str]]) -> None:
        self.plans[path] += [a if isinstance(a, tuple) else (a, {}) for a in answers]

    async def _handle(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.got[path].append(Got(headers, await request.read(), time.monotonic()))
        if self.plans[path]:
            status, extra = self.plans[path].pop(0)
        else:
            status, extra = self.always.get(path, 200), {}
        return web.Response(status=status, headers=extra, text=f"answer {status}")
