"""A local Slack Web API, OpenID Connect provider and response_url receiver, for the chat front end.

Speaks what the docs say, and checks what it gets:

* ``POST /api/auth.test`` needs ``Authorization: Bearer xoxb-…`` of a known bot token.
* ``POST /api/oauth.v2.access`` and ``/api/openid.connect.token`` need HTTP Basic client
  credentials and a ``code`` this fake issued (once); the first answers an installation
  (docs.slack.dev oauth.v2.access), the second ``{access_token, id_token}`` whose id_token
  carries ``nonce``, ``aud`` and the ``https://slack.com/user_id``/``team_id`` claims.
* ``POST /api/openid.connect.userInfo`` (Bearer the OIDC access token) answers those claims.
* ``POST /resp/{id}`` stands in for a response_url: a JSON body with a non-empty fallback
  ``text``, ``response_type`` ephemeral|in_channel when present, and Block Kit within its
  limits (header plain_text ≤ 150, section text ≤ 3000, ≤ 10 fields of ≤ 2000, an image block
  with ``image_url`` and ``alt_text``, actions of ≤ 25 buttons each with a plain_text label
  ≤ 75 and either a ``url`` or an ``action_id`` ≤ 255 plus ``value`` ≤ 2000, context of 1–10).
"""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from tests.fakes.receiver import Peer
from tests.fakes.server import Received

CLIENT_ID, CLIENT_SECRET = "1111.2222", "fake-client-secret"


class FakeSlackApi(Peer):
    name = "slack-api"

    def __init__(self) -> None:
        super().__init__()
        self.bot_tokens: dict[str, str] = {}  # token → team id
        self.install_codes: dict[str, dict[str, Any]] = {}  # code → installation answer
        self.oidc_codes: dict[str, dict[str, str]] = {}  # code → claims
        self.oidc_tokens: dict[str, dict[str, str]] = {}  # access token → claims

    # -- what tests set up -----------------------------------------------------------------------

    def bot(self, team_id: str) -> str:
        token = f"xoxb-{secrets.token_hex(6)}"
        self.bot_tokens[token] = team_id
        return token

    def response_url(self) -> tuple[str, str]:
        path = f"/resp/{secrets.token_hex(8)}"
        return path, self.url + path

    def install_code(self, team_id: str, team_name: str = "Clinic") -> tuple[str, str]:
        """A code as Slack's install page would return it; and the bot token it grants."""
        code, token = secrets.token_hex(8), self.bot(team_id)
        self.install_codes[code] = {
            "ok": True, "access_token": token, "token_type": "bot", "scope": "commands,chat:write",
            "bot_user_id": "UBOT", "app_id": "A0APP", "team": {"id": team_id, "name": team_name},
            "enterprise": None, "is_enterprise_install": False, "authed_user": {"id": "UINSTALLER"},
        }  # fmt: skip
        return code, token

    def sign_in(self, nonce: str, team_id: str, user_id: str) -> str:
        """What Slack's /openid/connect/authorize does for a signed-in user: a one-time code."""
        code = secrets.token_hex(8)
        self.oidc_codes[code] = {
            "nonce": nonce, "aud": CLIENT_ID, "sub": user_id,
            "https://slack.com/user_id": user_id, "https://slack.com/team_id": team_id,
        }  # fmt: skip
        return code

    def replies(self, path: str) -> list[dict[str, Any]]:
        return [r.json() for r in self.received(path)]

    # -- checking and answering ------------------------------------------------------------------

    def check(self, request: Received) -> list[str]:
        if not request.path.startswith("/resp/"):
            return []
        try:
            body: dict[str, Any] = request.json()
        except ValueError:
            return ["a response_url takes JSON"]
        problems = [] if isinstance(body.get("text"), str) and body["text"] else ["no fallback text"]
        if body.get("response_type", "ephemeral") not in ("ephemeral", "in_channel"):
            problems.append("response_type must be ephemeral or in_channel")
        return problems + blocks_problems(body.get("blocks", []))

    def refuse(self, request: Received, problems: list[str]) -> web.StreamResponse:
        return web.Response(text="invalid_blocks", status=400)

    def answer(self, request: Received) -> web.StreamResponse:
        if request.path.startswith("/resp/"):
            return web.Response(text="ok")
        method = request.path.removeprefix("/api/")
        form = dict(parse_qsl(request.body.decode())) | request.query
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        if method == "auth.test":
            if bearer not in self.bot_tokens:
                return _error("invalid_auth")
            team = self.bot_tokens[bearer]
            return web.json_response({"ok": True, "team_id": team, "user_id": "UBOT", "bot_id": "B0BOT", "url": ""})
        if method in ("oauth.v2.access", "openid.connect.token"):
            if not _client_ok(request):
                return _error("invalid_client_id")
            codes = self.install_codes if method == "oauth.v2.access" else self.oidc_codes
            found = codes.pop(form.get("code", ""), None)
            if found is None:
                return _error("invalid_code")
            if method == "oauth.v2.access":
                return web.json_response(found)
            access = f"xoxp-{secrets.token_hex(6)}"
            self.oidc_tokens[access] = found
            return web.json_response({"ok": True, "access_token": access, "token_type": "Bearer",
                                      "id_token": _jwt(found)})  # fmt: skip
        if method == "openid.connect.userInfo":
            claims = self.oidc_tokens.get(bearer)
            if claims is None:
                return _error("invalid_auth")
            return web.json_response({"ok": True, **{k: v for k, v in claims.items() if k not in ("nonce", "aud")}})
        return _error("unknown_method")


def blocks_problems(blocks: list[dict[str, Any]]) -> list[str]:
    problems = [] if len(blocks) <= 50 else ["more than 50 blocks"]
    for block in blocks:
        kind = block.get("type")
        if kind == "header":
            if block["text"]["type"] != "plain_text" or len(block["text"]["text"]) > 150:
                problems.append("a header must be plain_text of at most 150 characters")
        elif kind == "section":
            if "text" in block and len(block["text"]["text"]) > 3000:
                problems.append("section text over 3000")
            fields = block.get("fields", [])
            if len(fields) > 10 or any(len(f["text"]) > 2000 for f in fields):
                problems.append("section fields break their limits")
            if "text" not in block and not fields:
                problems.append("a section needs text or fields")
        elif kind == "image":
            if not str(block.get("image_url", "")).startswith(("http://", "https://")) or not block.get("alt_text"):
                problems.append("an image block needs image_url and alt_text")
        elif kind == "actions":
            elements = block.get("elements", [])
            if not 0 < len(elements) <= 25:
                problems.append("actions need 1 to 25 elements")
            for e in elements:
                label = e.get("text", {})
                if e.get("type") != "button" or label.get("type") != "plain_text" or len(label.get("text", "")) > 75:
                    problems.append("a button needs a plain_text label of at most 75 characters")
                if "url" not in e and (len(e.get("action_id", "")) > 255 or len(e.get("value", "")) > 2000):
                    problems.append("button action_id/value too long")
        elif kind == "context":
            if not 0 < len(block.get("elements", [])) <= 10:
                problems.append("context needs 1 to 10 elements")
        else:
            problems.append(f"unexpected block {kind}")
    return problems


def _client_ok(request: Received) -> bool:
    expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    return request.headers.get("authorization") == f"Basic {expected}"


def _error(code: str) -> web.Response:
    return web.json_response({"ok": False, "error": code})


def _jwt(claims: dict[str, str]) -> str:
    """An unsigned-looking JWT (the signature part is random: the client must not need it)."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.{secrets.token_urlsafe(32)}"
