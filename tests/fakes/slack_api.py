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
* ``POST /api/views.open`` (docs.slack.dev views.open, Bearer a bot token, JSON): a
  ``trigger_id`` the test issued (``trigger``) used once and within 3 s (``invalid_trigger_id``,
  ``exchanged_trigger_id``, ``expired_trigger_id`` otherwise), and a modal view within
  the Block Kit reference's limits (``modal_problems``).  Refusals answer
  ``{"ok": false, "error": "invalid_arguments"}`` as Slack does.
* Socket Mode (docs.slack.dev/apis/events-api/using-socket-mode): ``POST
  /api/apps.connections.open`` with an app-level token (Bearer ``xapp-…``) answers a one-time
  ``ws://…/link/{ticket}``.  That WebSocket says ``hello``, then carries what the test sends
  (``envelope``: ``{envelope_id, type, payload, accepts_response_payload}``; ``disconnect``).
  An ack must carry a known ``envelope_id`` within 3 s (else a problem under ``/link``); an
  ack's ``payload`` (a view submission's ``response_action``) is kept.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
import uuid
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web

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
        self.app_tokens: set[str] = set()
        self.tickets: set[str] = set()  # Socket Mode URLs handed out and not yet used
        self.sockets: list[web.WebSocketResponse] = []  # open Socket Mode connections
        self.connections = 0  # Socket Mode connections accepted, ever
        self.sent: dict[str, float] = {}  # envelope id → when it went out
        self.acks: dict[str, dict[str, Any]] = {}  # envelope id → the ack
        self.triggers: set[str] = set()  # trigger ids already exchanged for a view
        self.issued: dict[str, float] = {}  # trigger id → when its command was sent
        self.views: dict[str, dict[str, Any]] = {}  # trigger id → the view opened with it

    # -- what tests set up -----------------------------------------------------------------------

    def bot(self, team_id: str) -> str:
        token = f"xoxb-{secrets.token_hex(6)}"
        self.bot_tokens[token] = team_id
        return token

    def trigger(self, trigger_id: str | None = None) -> str:
        """A trigger id as a command or click carries it, valid for 3 s from its first issue."""
        trigger_id = trigger_id or f"{secrets.randbelow(10**12)}.{secrets.randbelow(10**12)}.{secrets.token_hex(16)}"
        self.issued.setdefault(trigger_id, time.monotonic())
        return trigger_id

    def app_token(self) -> str:
        token = f"xapp-1-A0APP-{secrets.token_hex(6)}"
        self.app_tokens.add(token)
        return token

    def envelope(self, kind: str, payload: dict[str, Any]) -> str:
        """Send an envelope down the newest Socket Mode connection; its id."""
        envelope_id = str(uuid.uuid4())
        message = {
            "envelope_id": envelope_id, "type": kind, "payload": payload,
            "accepts_response_payload": kind != "events_api", "retry_attempt": 0, "retry_reason": "",
        }  # fmt: skip
        self.sent[envelope_id] = time.monotonic()
        self._send(message)
        return envelope_id

    def disconnect(self, reason: str = "refresh_requested") -> None:
        """What Slack sends before it drops a connection: the client is to open a new one."""
        self._send({"type": "disconnect", "reason": reason, "debug_info": {"host": "fake-slack"}})

    def _send(self, message: dict[str, Any]) -> None:
        assert self._loop is not None and self.sockets, "no Socket Mode connection is open"
        asyncio.run_coroutine_threadsafe(self.sockets[-1].send_json(message), self._loop).result(5)

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

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/link/{ticket}", self._socket)
        super().routes(app)

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        ticket = request.match_info["ticket"]
        if ticket not in self.tickets:
            return web.Response(status=401, text="unknown or used Socket Mode URL")
        self.tickets.discard(ticket)
        ws = web.WebSocketResponse()  # answers the client's pings itself
        await ws.prepare(request)
        self.sockets.append(ws)
        self.connections += 1
        await ws.send_json({"type": "hello", "num_connections": len(self.sockets),
                            "debug_info": {"host": "fake-slack", "approximate_connection_time": 18060},
                            "connection_info": {"app_id": "A0APP"}})  # fmt: skip
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                self._acked(json.loads(message.data))
        self.sockets.remove(ws)
        return ws

    def _acked(self, ack: dict[str, Any]) -> None:
        envelope_id = str(ack.get("envelope_id", ""))
        sent = self.sent.get(envelope_id)
        if sent is None or envelope_id in self.acks:
            self.problems["/link"].append(f"an ack for no envelope awaiting one: {envelope_id!r}")
            return
        if time.monotonic() - sent > 3.0:
            self.problems["/link"].append(f"envelope {envelope_id} acked after 3 s")
        self.acks[envelope_id] = ack

    def check(self, request: Received) -> list[str]:
        if request.path == "/api/views.open":
            return self._views_open(request)
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

    def _views_open(self, request: Received) -> list[str]:
        if request.headers.get("authorization", "").removeprefix("Bearer ") not in self.bot_tokens:
            return ["not a bot token"]
        try:
            body = request.json()
        except ValueError:
            return ["views.open takes JSON"]
        trigger = str(body.get("trigger_id", ""))
        if trigger not in self.issued:
            return ["invalid_trigger_id"]
        if trigger in self.triggers:
            return ["exchanged_trigger_id"]
        self.triggers.add(trigger)
        if time.monotonic() - self.issued[trigger] > 3.0:
            return ["expired_trigger_id"]
        view = body.get("view")
        return modal_problems(view) if isinstance(view, dict) else ["view must be a JSON object"]

    def refuse(self, request: Received, problems: list[str]) -> web.StreamResponse:
        if request.path.startswith("/api/"):
            error = problems[0] if problems[0].endswith("_trigger_id") else "invalid_arguments"
            return web.json_response({"ok": False, "error": error, "response_metadata": {"messages": problems}})
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
        if method == "apps.connections.open":
            if request.method != "POST" or bearer not in self.app_tokens:
                return _error("invalid_auth" if request.method == "POST" else "insecure_request")
            ticket = secrets.token_hex(8)
            self.tickets.add(ticket)
            return web.json_response({"ok": True, "url": f"{self.url.replace('http', 'ws', 1)}/link/{ticket}"})
        if method == "views.open":
            body = request.json()
            view = body["view"] | {"id": f"V{secrets.token_hex(5).upper()}", "state": {"values": {}}}
            self.views[body["trigger_id"]] = view
            return web.json_response({"ok": True, "view": view})
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


def modal_problems(view: dict[str, Any]) -> list[str]:
    """A modal view against the reference (docs.slack.dev/reference/views/modal-views and the
    input block and element pages)."""
    problems = [] if view.get("type") == "modal" else ["view type must be modal"]
    for key in ("title", "submit", "close"):
        text = view.get(key)
        if text is not None and (text.get("type") != "plain_text" or not 0 < len(text.get("text", "")) <= 24):
            problems.append(f"{key} must be plain_text of 1 to 24 characters")
    if "title" not in view:
        problems.append("a modal needs a title")
    blocks = view.get("blocks") or []
    if not 0 < len(blocks) <= 100:
        problems.append("a modal holds 1 to 100 blocks")
    if any(b.get("type") == "input" for b in blocks) and "submit" not in view:
        problems.append("a modal with input blocks needs submit")
    if len(view.get("callback_id", "")) > 255 or len(view.get("private_metadata", "")) > 3000:
        problems.append("callback_id over 255 or private_metadata over 3000")
    for block in blocks:
        if block.get("type") != "input":
            problems += blocks_problems([block])
            continue
        label, element = block.get("label") or {}, block.get("element") or {}
        if label.get("type") != "plain_text" or not 0 < len(label.get("text", "")) <= 2000:
            problems.append("an input needs a plain_text label of at most 2000")
        if not 0 < len(block.get("block_id", "")) <= 255 or not 0 < len(element.get("action_id", "")) <= 255:
            problems.append("block_id and action_id are 1 to 255 characters")
        problems += _element_problems(element)
    return problems


def _element_problems(element: dict[str, Any]) -> list[str]:
    kind = element.get("type")
    placeholder = element.get("placeholder", {"type": "plain_text", "text": "-"})
    problems = [] if placeholder.get("type") == "plain_text" and len(placeholder["text"]) <= 150 else ["placeholder"]
    if kind == "plain_text_input":
        if not 0 < element.get("max_length", 3000) <= 3000:
            problems.append("max_length is 1 to 3000")
        if len(element.get("initial_value", "")) > element.get("max_length", 3000):
            problems.append("initial_value longer than max_length")
        return problems
    if kind not in ("static_select", "multi_static_select"):
        return [*problems, f"unexpected element {kind}"]
    options = element.get("options") or []
    if not 0 < len(options) <= 100:
        problems.append("a select has 1 to 100 options")
    for option in options:
        if option.get("text", {}).get("type") != "plain_text" or len(option["text"].get("text", "")) > 75:
            problems.append("an option's text is plain_text of at most 75")
        if not 0 < len(option.get("value", "")) <= 150:
            problems.append("an option's value is 1 to 150 characters")
    chosen = element.get("initial_options", []) + ([element["initial_option"]] if "initial_option" in element else [])
    if any(c not in options for c in chosen):
        problems.append("initial options must be among the options")
    if kind == "static_select" and "initial_options" in element:
        problems.append("static_select takes initial_option")
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
