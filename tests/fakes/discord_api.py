"""A local Discord HTTP API (v10) for the Discord front end, checking the documented shapes.

* ``PATCH /api/v10/webhooks/{app}/{token}/messages/@original`` and ``POST
  /api/v10/webhooks/{app}/{token}?wait=true`` (interaction follow-ups): JSON, or multipart with
  ``payload_json`` and ``files[n]`` matching ``attachments[].id``; embeds within their limits,
  components as action rows of ≤ 5 buttons (a ``custom_id`` ≤ 100, or a ``url`` for style 5).
  ``app`` must be the application id; the token one the test handed out (``interaction``).
* ``POST /api/v10/interactions/{id}/{token}/callback``: a known callback type and its data;
  a MODAL (type 9) by ``modal_problems`` (receiving-and-responding, modal: ``custom_id`` ≤ 100,
  title ≤ 45, 1–5 action rows each of one text input: type 4, style 1 or 2, label ≤ 45,
  placeholder ≤ 100, value and lengths ≤ 4000).
* ``PUT /api/v10/applications/{app}/commands`` and ``…/guilds/{guild}/commands`` (bulk
  overwrite, ``Authorization: Bot …``): a list of ≤ 100 CHAT_INPUT commands, names
  ``^[-_a-z0-9]{1,32}$``, descriptions 1–100, ≤ 25 options (required first), ≤ 25 choices.
* ``POST /api/v10/channels/{id}/messages`` (``Authorization: Bot …``): a bot message.
* ``POST /api/v10/oauth2/token`` (HTTP Basic client credentials, a code issued by ``sign_in``,
  once, for the same redirect URI) and ``GET /api/v10/users/@me`` (Bearer): OAuth2 ``identify``.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from tests.fakes.receiver import Peer
from tests.fakes.server import Received

APP_ID, CLIENT_SECRET, BOT_TOKEN = "123456789012345678", "discord-client-secret", "bot-token.fake"
API = "/api/v10"
_NAME = re.compile(r"^[-_a-z0-9]{1,32}$")
_WEBHOOK = re.compile(rf"^{API}/webhooks/(\d+)/([\w.-]+)(/messages/@original)?$")
_CALLBACK = re.compile(rf"^{API}/interactions/(\d+)/([\w.-]+)/callback$")
_COMMANDS = re.compile(rf"^{API}/applications/(\d+)(?:/guilds/(\d+))?/commands$")
_CHANNEL = re.compile(rf"^{API}/channels/(\d+)/messages$")


class FakeDiscordApi(Peer):
    name = "discord-api"

    def __init__(self) -> None:
        super().__init__()
        self.tokens: set[str] = set()  # interaction tokens handed out
        self.codes: dict[str, tuple[str, str]] = {}  # OAuth code → (user id, redirect URI)
        self.access: dict[str, str] = {}  # access token → user id
        self.registered: dict[str, list[dict[str, Any]]] = {}  # "global" or a guild id → commands
        self.files: dict[str, list[bytes]] = {}  # request path → files received

    # -- what tests set up ---------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return self.url + API

    def interaction(self) -> str:
        token = "aW50ZXJhY3Rpb24" + secrets.token_urlsafe(24).replace("-", "x").replace("_", "y")
        self.tokens.add(token)
        return token

    def original(self, token: str) -> str:
        return f"{API}/webhooks/{APP_ID}/{token}/messages/@original"

    def followups(self, token: str) -> str:
        return f"{API}/webhooks/{APP_ID}/{token}"

    def sign_in(self, user_id: str, redirect_uri: str) -> str:
        """What Discord's authorize page does for a signed-in user who consents: a code."""
        code = secrets.token_hex(10)
        self.codes[code] = (user_id, redirect_uri)
        return code

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [payload(r) for r in self.received(path)]

    # -- checking and answering ------------------------------------------------------------------

    def check(self, request: Received) -> list[str]:
        path = request.path
        if (found := _WEBHOOK.match(path)) is not None:
            problems = [] if found[1] == APP_ID else ["webhook of another application"]
            if found[2] not in self.tokens:
                problems.append("unknown interaction token")
            if found[3] and request.method != "PATCH":
                problems.append("@original is edited with PATCH")
            if not found[3] and request.method != "POST":
                problems.append("a follow-up is a POST")
            return problems + message_problems(request, payload(request), self.files)
        if (found := _CALLBACK.match(path)) is not None:
            return response_problems(request, payload(request), self.files)
        if (found := _COMMANDS.match(path)) is not None:
            problems = self._bot(request) + ([] if found[1] == APP_ID else ["another application"])
            return (
                problems
                + ([] if request.method == "PUT" else ["bulk overwrite is PUT"])
                + commands_problems(payload(request))
            )
        if _CHANNEL.match(path):
            return self._bot(request) + message_problems(request, payload(request), self.files)
        if path == f"{API}/oauth2/token":
            form = dict(parse_qsl(request.body.decode()))
            problems = [] if form.get("grant_type") == "authorization_code" else ["grant_type"]
            expected = "Basic " + base64.b64encode(f"{APP_ID}:{CLIENT_SECRET}".encode()).decode()
            return problems + ([] if request.headers.get("authorization") == expected else ["client credentials"])
        return []

    def answer_problems(self, response: dict[str, Any]) -> list[str]:
        """What is wrong with an initial response given as the body of the answer to an HTTP
        interaction (JSON; a file would need the callback endpoint's multipart)."""
        body = json.dumps(response).encode()
        answer = Received("POST", "/interaction-answer", {}, {"content-type": "application/json"}, body)
        return response_problems(answer, response, self.files)

    def _bot(self, request: Received) -> list[str]:
        return [] if request.headers.get("authorization") == f"Bot {BOT_TOKEN}" else ["not the bot token"]

    def answer(self, request: Received) -> web.StreamResponse:
        path = request.path
        if (found := _COMMANDS.match(path)) is not None:
            commands = [c | {"id": str(secrets.randbelow(10**18)), "application_id": APP_ID} for c in payload(request)]
            self.registered[found[2] or "global"] = commands
            return web.json_response(commands)
        if _CALLBACK.match(path):
            return web.Response(status=204)
        if _WEBHOOK.match(path) or _CHANNEL.match(path):
            body = payload(request)
            return web.json_response({"id": str(secrets.randbelow(10**18)), "type": 0} | body)
        if path == f"{API}/oauth2/token":
            form = dict(parse_qsl(request.body.decode()))
            found_code = self.codes.pop(form.get("code", ""), None)
            if found_code is None or found_code[1] != form.get("redirect_uri"):
                return web.json_response({"error": "invalid_grant"}, status=400)
            access = secrets.token_hex(12)
            self.access[access] = found_code[0]
            return web.json_response(
                {"access_token": access, "token_type": "Bearer", "expires_in": 604800, "scope": "identify"}
            )
        if path == f"{API}/users/@me":
            user = self.access.get(request.headers.get("authorization", "").removeprefix("Bearer "))
            if user is None:
                return web.json_response({"message": "401: Unauthorized", "code": 0}, status=401)
            return web.json_response({"id": user, "username": f"user{user[-4:]}", "discriminator": "0"})
        return web.json_response({"message": "404: Not Found", "code": 0}, status=404)

    def refuse(self, request: Received, problems: list[str]) -> web.StreamResponse:
        return web.json_response({"message": "Invalid Form Body", "code": 50035, "errors": problems}, status=400)


def _parts(request: Received) -> list[Message]:
    head = f"Content-Type: {request.headers.get('content-type', '')}\r\n\r\n".encode()
    parsed = BytesParser(policy=HTTP).parsebytes(head + request.body)
    return [p for p in parsed.iter_parts()] if parsed.is_multipart() else []  # type: ignore[attr-defined]


def payload(request: Received) -> Any:
    """The JSON of a request: the body, or a multipart body's ``payload_json``."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        for part in _parts(request):
            if part.get_param("name", header="content-disposition") == "payload_json":
                return json.loads(part.get_payload(decode=True) or b"{}")
        return {}
    return request.json() if request.body else {}


def message_problems(request: Received, body: dict[str, Any], files: dict[str, list[bytes]]) -> list[str]:
    problems = [] if isinstance(body.get("allowed_mentions", {}).get("parse", []), list) else ["allowed_mentions"]
    if not body.get("content") and not body.get("embeds") and not body.get("components"):
        problems.append("an empty message")
    if len(body.get("content", "")) > 2000:
        problems.append("content over 2000")
    if body.get("flags", 0) & ~(64 | 4 | 4096):
        problems.append("flags other than EPHEMERAL, SUPPRESS_EMBEDS, SUPPRESS_NOTIFICATIONS")
    total = 0
    for embed in body.get("embeds", []):
        for key, limit in (("title", 256), ("description", 4096)):
            total += len(embed.get(key, ""))
            if len(embed.get(key, "")) > limit:
                problems.append(f"embed {key} over {limit}")
        if not isinstance(embed.get("color", 0), int):
            problems.append("color must be an integer")
        fields = embed.get("fields", [])
        if len(fields) > 25 or any(not f["value"] or len(f["value"]) > 1024 or len(f["name"]) > 256 for f in fields):
            problems.append("embed fields break their limits")
        total += sum(len(f["name"]) + len(f["value"]) for f in fields)
        total += len(embed.get("footer", {}).get("text", ""))
        image = embed.get("image", {}).get("url", "")
        if image.startswith("attachment://"):
            names = [a.get("filename") for a in body.get("attachments", [])]
            if image.removeprefix("attachment://") not in names:
                problems.append("attachment:// names no attachment")
    if total > 6000:
        problems.append("embeds over 6000 characters")
    rows = body.get("components", [])
    if len(rows) > 5:
        problems.append("more than 5 action rows")
    for row in rows:
        buttons = row.get("components", [])
        if row.get("type") != 1 or not 0 < len(buttons) <= 5:
            problems.append("an action row holds 1 to 5 components")
        for button in buttons:
            if button.get("type") != 2 or not 0 < len(button.get("label", "")) <= 80:
                problems.append("a button needs a label of 1 to 80 characters")
            if button.get("style") == 5:
                if not str(button.get("url", "")).startswith(("http://", "https://")) or "custom_id" in button:
                    problems.append("a link button has a url and no custom_id")
            elif button.get("style") not in (1, 2, 3, 4) or not 0 < len(button.get("custom_id", "")) <= 100:
                problems.append("a button needs a style and a custom_id of 1 to 100 characters")
    attachments = body.get("attachments", [])
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        uploaded = {
            p.get_param("name", header="content-disposition"): p.get_payload(decode=True) for p in _parts(request)
        }
        for attachment in attachments:
            data = uploaded.get(f"files[{attachment.get('id')}]")
            if not data:
                problems.append(f"attachment {attachment.get('id')} has no files[n] part")
            else:
                files.setdefault(request.path, []).append(data)
    elif attachments:
        problems.append("attachments without a multipart body")
    return problems


def response_problems(request: Received, body: dict[str, Any], files: dict[str, list[bytes]]) -> list[str]:
    """An interaction's initial response (callback types 1, 4–9), in the documented shapes."""
    problems = [] if body.get("type") in (1, 4, 5, 6, 7, 8, 9) else ["unknown callback type"]
    if body.get("type") in (4, 7):
        problems += message_problems(request, body.get("data") or {}, files)
    if body.get("type") == 9:
        problems += modal_problems(body.get("data") or {})
    return problems


def modal_problems(modal: dict[str, Any]) -> list[str]:
    problems = [] if 0 < len(modal.get("custom_id", "")) <= 100 else ["custom_id is 1 to 100 characters"]
    if not 0 < len(modal.get("title", "")) <= 45:
        problems.append("title is 1 to 45 characters")
    rows = modal.get("components") or []
    if not 0 < len(rows) <= 5:
        problems.append("a modal holds 1 to 5 components")
    for row in rows:
        inputs = row.get("components") or []
        if row.get("type") != 1 or len(inputs) != 1:
            problems.append("each action row holds one text input")
            continue
        text = inputs[0]
        if text.get("type") != 4 or text.get("style") not in (1, 2) or not 0 < len(text.get("custom_id", "")) <= 100:
            problems.append("a text input is type 4, style 1 or 2, with a custom_id of 1 to 100")
        if not 0 < len(text.get("label", "")) <= 45 or len(text.get("placeholder", "")) > 100:
            problems.append("a text input's label is 1 to 45 characters, its placeholder at most 100")
        longest = text.get("max_length", 4000)
        if not 0 < longest <= 4000 or len(text.get("value", "")) > longest:
            problems.append("a text input's max_length is 1 to 4000 and its value within it")
    return problems


def commands_problems(commands: Any) -> list[str]:
    if not isinstance(commands, list) or len(commands) > 100:
        return ["a list of at most 100 commands"]
    problems = []
    for command in commands:
        name = str(command.get("name", ""))
        if not _NAME.match(name) or command.get("type", 1) != 1:
            problems.append(f"{name}: name or type")
        if not 1 <= len(command.get("description", "")) <= 100:
            problems.append(f"{name}: description must be 1 to 100 characters")
        options = command.get("options", [])
        if len(options) > 25:
            problems.append(f"{name}: more than 25 options")
        required = [bool(o.get("required")) for o in options]
        if required != sorted(required, reverse=True):
            problems.append(f"{name}: required options must come first")
        for option in options:
            if not _NAME.match(str(option.get("name", ""))) or option.get("type") not in range(1, 12):
                problems.append(f"{name}: an option's name or type")
            if not 1 <= len(option.get("description", "")) <= 100:
                problems.append(f"{name}: an option's description must be 1 to 100 characters")
            choices = option.get("choices", [])
            if len(choices) > 25 or any(set(c) != {"name", "value"} for c in choices):
                problems.append(f"{name}: choices are at most 25 of name and value")
    return problems
