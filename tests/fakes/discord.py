"""A local Discord webhook endpoint: ``POST /api/webhooks/{id}/{token}?wait=true`` (execute webhook).

It checks the documented limits (10 embeds; title 256, description 4096, 25 fields of name 256
and value 1024, footer 2048, 6000 characters in all; content 2000) and that ``allowed_mentions``
is present, and answers like Discord: 200 with the message when ``wait=true``, 404 ``Unknown
Webhook`` for a path it was told is deleted, and the faults a test programs (a 429 here carries
Discord's JSON body ``{"message", "retry_after", "global"}``).
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime
from typing import Any

from aiohttp import web

from tests.fakes.receiver import Peer
from tests.fakes.server import Received

_PATH = re.compile(r"^/api/webhooks/\d+/[\w-]+$")


class FakeDiscord(Peer):
    name = "discord"

    def __init__(self) -> None:
        super().__init__()
        self.deleted: set[str] = set()

    def webhook(self) -> tuple[str, str]:
        """A fresh webhook: its path (for ``received``/``fail``) and its full URL."""
        path = f"/api/webhooks/{secrets.randbelow(10**18) + 10**17}/{secrets.token_urlsafe(48)}"
        return path, self.url + path

    def rate_limited(self, path: str, retry_after: float, **headers: str) -> None:
        body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": False}
        self.fail(path, status=429, body=body, headers=headers)

    def check(self, request: Received) -> list[str]:
        if not _PATH.match(request.path):
            return ["not a webhook path"]
        problems = [] if request.query.get("wait") == "true" else ["wait=true missing"]
        body: dict[str, Any] = request.json()
        embeds = body.get("embeds", [])
        if len(embeds) > 10:
            problems.append("more than 10 embeds")
        if len(body.get("content", "")) > 2000:
            problems.append("content over 2000 characters")
        if not isinstance(body.get("allowed_mentions", {}).get("parse"), list):
            problems.append("allowed_mentions.parse missing")
        total = 0
        for embed in embeds:
            limits = {"title": 256, "description": 4096}
            for key, limit in limits.items():
                total += len(embed.get(key, ""))
                if len(embed.get(key, "")) > limit:
                    problems.append(f"embed {key} over {limit}")
            if not isinstance(embed.get("color", 0), int):
                problems.append("embed color must be an integer")
            if "timestamp" in embed:
                datetime.fromisoformat(embed["timestamp"])
            fields = embed.get("fields", [])
            if len(fields) > 25:
                problems.append("more than 25 fields")
            for item in fields:
                total += len(item["name"]) + len(item["value"])
                if len(item["name"]) > 256 or len(item["value"]) > 1024 or not item["value"]:
                    problems.append("a field breaks its limits")
            footer = embed.get("footer", {}).get("text", "")
            total += len(footer)
            if len(footer) > 2048:
                problems.append("footer over 2048")
        if total > 6000:
            problems.append("embeds over 6000 characters")
        return problems

    def refuse(self, request: Received, problems: list[str]) -> web.StreamResponse:
        return web.json_response({"message": "Invalid Form Body", "code": 50035, "errors": problems}, status=400)

    def answer(self, request: Received) -> web.StreamResponse:
        if request.path in self.deleted:
            return web.json_response({"message": "Unknown Webhook", "code": 10015}, status=404)
        body = request.json()
        message = {"id": str(secrets.randbelow(10**18)), "type": 0, "content": body.get("content", "")}
        headers = {"X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "4", "X-RateLimit-Reset-After": "1.000"}
        return web.json_response(message | {"embeds": body.get("embeds", [])}, headers=headers)
