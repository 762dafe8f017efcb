"""A local Slack: incoming webhooks (``POST /services/T…/B…/…``) and ``POST /api/chat.postMessage``.

It checks Block Kit's documented limits (50 blocks; header plain_text of at most 150
characters; section text 3000, at most 10 fields of 2000; context at most 10 elements) and the
top-level fallback ``text``, and answers the way Slack does: a webhook says ``ok`` as plain
text, or a plain-text error code with its status; the Web API says HTTP 200 with ``{"ok":
true}`` or ``{"ok": false, "error": …}`` (``invalid_auth``, ``channel_not_found``…).
"""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp import web

from tests.fakes.receiver import Peer
from tests.fakes.server import Received

API_PATH = "/api/chat.postMessage"


class FakeSlack(Peer):
    name = "slack"

    def __init__(self) -> None:
        super().__init__()
        self.tokens: dict[str, set[str]] = {}  # a bot token → the channels it may post to

    def webhook(self) -> tuple[str, str]:
        path = f"/services/T{secrets.token_hex(4).upper()}/B{secrets.token_hex(4).upper()}/{secrets.token_hex(12)}"
        return path, self.url + path

    def bot(self, channel: str = "C0123ABCDEF") -> str:
        token = f"xoxb-{secrets.token_hex(6)}-{secrets.token_hex(12)}"
        self.tokens[token] = {channel}
        return token

    def posted(self, token: str) -> list[Received]:
        return [r for r in self.received(API_PATH) if r.headers.get("authorization") == f"Bearer {token}"]

    def check(self, request: Received) -> list[str]:
        body: dict[str, Any] = request.json()
        problems = [] if isinstance(body.get("text"), str) and body["text"] else ["no fallback text"]
        blocks = body.get("blocks", [])
        if len(blocks) > 50:
            problems.append("more than 50 blocks")
        for block in blocks:
            kind = block["type"]
            if kind == "header":
                text = block["text"]
                if text["type"] != "plain_text" or len(text["text"]) > 150:
                    problems.append("a header must be plain_text of at most 150 characters")
            elif kind == "section":
                if len(block["text"]["text"]) > 3000:
                    problems.append("section text over 3000")
                fields = block.get("fields", [])
                if len(fields) > 10 or any(len(f["text"]) > 2000 for f in fields):
                    problems.append("section fields break their limits")
            elif kind == "context":
                if not 0 < len(block["elements"]) <= 10:
                    problems.append("context needs 1 to 10 elements")
            elif kind == "actions":
                if any(not e.get("url", "").startswith(("http://", "https://")) for e in block["elements"]):
                    problems.append("a link button needs a URL")
            else:
                problems.append(f"unexpected block {kind}")
        return problems

    def refuse(self, request: Received, problems: list[str]) -> web.StreamResponse:
        if request.path == API_PATH:
            return web.json_response({"ok": False, "error": "invalid_blocks", "errors": problems})
        return web.Response(text="invalid_blocks", status=400)

    def answer(self, request: Received) -> web.StreamResponse:
        if request.path != API_PATH:
            return web.Response(text="ok")
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token not in self.tokens:
            return web.json_response({"ok": False, "error": "invalid_auth"})
        channel = request.json().get("channel")
        if channel not in self.tokens[token]:
            return web.json_response({"ok": False, "error": "channel_not_found"})
        return web.json_response({"ok": True, "channel": channel, "ts": "1700000000.000100"})
