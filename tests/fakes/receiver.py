"""A local HTTP peer that records what it receives and plays programmed faults, plus the webhook receiver.

``Peer`` is the base of the chat fakes (discord, slack, teams, ntfy): a subclass checks a
request against the vendor's documented shape in ``check`` (a list of problems, answered with
a 400 the way the vendor would refuse it) and answers in ``answer``.  Requests and faults are
kept per path, so tests sharing one server never see each other's traffic.

``Receiver`` is an integrator's endpoint for the Webhook channel: it verifies Standard Webhooks
signatures with the official ``standardwebhooks`` library, not with our own code.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from typing import Any

from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.fakes.server import Fault, Received, ThreadedServer, apply_fault


class Peer(ThreadedServer):
    name = "peer"

    def __init__(self) -> None:
        super().__init__()
        self.requests: dict[str, list[Received]] = defaultdict(list)
        self.faults: dict[str, list[Fault]] = defaultdict(list)
        self.problems: dict[str, list[str]] = defaultdict(list)

    def fail(self, path: str, count: int = 1, **fault: Any) -> None:
        """The next ``count`` requests to ``path`` get ``Fault(**fault)``."""
        self.faults[path].extend(Fault(**fault) for _ in range(count))

    def received(self, path: str) -> list[Received]:
        return list(self.requests[path])

    # -- for subclasses ----------------------------------------------------------------------

    def check(self, request: Received) -> list[str]:
        """What is wrong with ``request`` by the vendor's documentation; empty when it is fine."""
        return []

    def answer(self, request: Received) -> web.StreamResponse:
        return web.json_response({"ok": True})

    def refuse(self, request: Received, problems: list[str]) -> web.StreamResponse:
        return web.json_response({"message": "; ".join(problems)}, status=400)

    # -- serving -----------------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._handle)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        received = Received.of(request, body=await request.read())
        self.requests[request.path].append(received)
        if self.faults[request.path]:
            early = await apply_fault(self.faults[request.path].pop(0), request, _message)
            if early is not None:
                return early
        problems = self.check(received)
        if problems:
            self.problems[request.path].extend(problems)
            return self.refuse(received, problems)
        return self.answer(received)


def _message(status: int) -> Any:
    return {"message": f"fake fault {status}"}


class Receiver(Peer):
    """An integrator's webhook endpoint.  ``secrets[path]`` is the ``whsec_`` secret it verifies with."""

    name = "receiver"

    def __init__(self) -> None:
        super().__init__()
        self.secrets: dict[str, str] = {}  # path → the secret that endpoint verifies with

    def check(self, request: Received) -> list[str]:
        problems = []
        if request.method != "POST" or request.headers.get("content-type") != "application/json":
            problems.append("expected a JSON POST")
        secret = self.secrets.get(request.path)
        if secret is None:
            return [*problems, "no secret registered for this path"]
        try:
            Webhook(secret).verify(request.body, request.headers)
        except WebhookVerificationError as exc:
            problems.append(f"signature: {exc}")
        try:
            document = request.json()
        except ValueError:
            return [*problems, "the body is not JSON"]
        if not isinstance(document, dict) or not {"type", "timestamp", "data"} <= set(document):
            problems.append("the body must have type, timestamp and data")
        return problems

    def path(self, secret: str) -> tuple[str, str]:
        """A fresh endpoint verifying with ``secret``: its path and its URL."""
        path = f"/hooks/{secrets.token_hex(8)}"
        self.secrets[path] = secret
        return path, self.url + path
