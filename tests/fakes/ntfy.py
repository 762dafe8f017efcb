"""A local ntfy server: JSON publishing on ``POST /`` (docs.ntfy.sh, "Publish as JSON").

It checks the documented fields (``topic`` required and well-formed; ``priority`` 1–5;
``tags`` a list of strings; ``click`` a URL; at most 3 ``actions`` of ``view``/``http``/
``broadcast`` with label and url) and a message of at most 4096 bytes, and answers as ntfy
does: 200 with the message (``id``, ``time``, ``event``…), or an error document ``{"code",
"http", "error"}``.  A topic registered with a token refuses any other credentials with 403.
"""

from __future__ import annotations

import re
import secrets
import time
from typing import Any

from aiohttp import web

from tests.fakes.receiver import Peer
from tests.fakes.server import Received

_TOPIC = re.compile(r"^[-_A-Za-z0-9]{1,64}$")


class FakeNtfy(Peer):
    name = "ntfy"

    def __init__(self) -> None:
        super().__init__()
        self.tokens: dict[str, str] = {}  # a protected topic → the token it accepts

    def topic(self, protected: bool = False) -> tuple[str, str | None]:
        topic = f"cb-{secrets.token_hex(8)}"
        token = f"tk_{secrets.token_hex(15)}" if protected else None
        if token:
            self.tokens[topic] = token
        return topic, token

    def published(self, topic: str) -> list[Received]:
        return [r for r in self.received("/") if r.json().get("topic") == topic]

    def check(self, request: Received) -> list[str]:
        body: dict[str, Any] = request.json()
        problems = [] if _TOPIC.match(str(body.get("topic", ""))) else ["invalid topic"]
        if body.get("priority", 3) not in (1, 2, 3, 4, 5):
            problems.append("priority must be 1 to 5")
        if not isinstance(body.get("tags", []), list) or not all(isinstance(t, str) for t in body.get("tags", [])):
            problems.append("tags must be a list of strings")
        if "click" in body and not str(body["click"]).startswith(("http://", "https://")):
            problems.append("click must be a URL")
        actions = body.get("actions", [])
        if len(actions) > 3 or any(a.get("action") not in ("view", "http", "broadcast") for a in actions):
            problems.append("at most 3 actions of view, http or broadcast")
        if any(not a.get("label") or not a.get("url") for a in actions):
            problems.append("an action needs a label and a url")
        if len(str(body.get("message", "")).encode()) > 4096:
            problems.append("message over 4096 bytes")
        return problems

    def refuse(self, request: Received, problems: list[str]) -> web.StreamResponse:
        return web.json_response({"code": 40000, "http": 400, "error": "; ".join(problems)}, status=400)

    def answer(self, request: Received) -> web.StreamResponse:
        body = request.json()
        expected = self.tokens.get(body["topic"])
        if expected is not None and request.headers.get("authorization") != f"Bearer {expected}":
            return web.json_response({"code": 40301, "http": 403, "error": "forbidden"}, status=403)
        now = int(time.time())
        message = {"id": secrets.token_hex(6), "time": now, "expires": now + 43200, "event": "message"}
        return web.json_response(message | {k: body[k] for k in ("topic", "title", "message") if k in body})
