"""The few Discord REST calls the front end makes, over one aiohttp session.

Interaction webhooks (``/webhooks/{app_id}/{token}``, ``/interactions/{id}/{token}/callback``)
are authorised by the interaction token in the path; the rest by ``Authorization: Bot …``.
The interaction endpoints are exempt from Discord's global rate limit, and a follow-up that
fails is not retried here (the token dies after 15 minutes; the caller logs it).
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from bot.discord.render import CHART, Message
from bot.discord.settings import DiscordSettings

Json = dict[str, Any]
TIMEOUT = aiohttp.ClientTimeout(total=10)


class DiscordApiError(Exception):
    """Discord refused a call, or did not answer.  ``status`` is None without an answer; the
    message names the route's shape, never a token."""

    def __init__(self, what: str, status: int | None, detail: str = "") -> None:
        super().__init__(f"discord {what}: " + (f"HTTP {status}" if status is not None else "no answer") + detail)
        self.status = status


class DiscordRest:
    def __init__(self, settings: DiscordSettings) -> None:
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=TIMEOUT, headers={"User-Agent": "CareBeacon (1.0)"})
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def webhook_url(self, token: str) -> str:
        """The interaction's webhook: follow-ups POST here for 15 minutes (also the /sync one)."""
        return f"{self.settings.api_url}/webhooks/{self.settings.application_id}/{token}"

    async def callback(self, interaction_id: str, token: str, response: Json) -> None:
        """The initial response to a gateway interaction (HTTP ones answer inline)."""
        url = f"{self.settings.api_url}/interactions/{interaction_id}/{token}/callback"
        await self._send("callback", "POST", url, json.dumps(response).encode(), "application/json")

    async def edit_original(self, token: str, message: Message) -> Json:
        """Replace the deferred "thinking…" reply (or the message a button sits on)."""
        return await self._message("edit original", "PATCH", self.webhook_url(token) + "/messages/@original", message)

    async def followup(self, token: str, message: Message) -> Json:
        return await self._message("follow-up", "POST", self.webhook_url(token) + "?wait=true", message)

    async def overwrite_commands(self, commands: list[Json], guild_id: str | None = None) -> list[Json]:
        """Bulk-overwrite the application's commands, in one guild or globally; Discord's answer."""
        base = f"{self.settings.api_url}/applications/{self.settings.application_id}"
        url = f"{base}/guilds/{guild_id}/commands" if guild_id else f"{base}/commands"
        found: Any = await self._send("register commands", "PUT", url, json.dumps(commands).encode(),
                                      "application/json", bot=True)  # fmt: skip
        return list(found)

    async def _message(self, what: str, method: str, url: str, message: Message) -> Json:
        if message.png is None:
            body, kind = json.dumps(message.payload).encode(), "application/json"
            found: Json = await self._send(what, method, url, body, kind)
            return found
        # A file goes as multipart: the JSON in ``payload_json``, the PNG as ``files[0]``.
        form = aiohttp.FormData()
        form.add_field("payload_json", json.dumps(message.payload), content_type="application/json")
        form.add_field("files[0]", message.png, filename=CHART, content_type="image/png")
        found = await self._send(what, method, url, form, None)
        return found

    async def _send(
        self, what: str, method: str, url: str, body: bytes | aiohttp.FormData, kind: str | None, *, bot: bool = False
    ) -> Any:
        headers = {"Content-Type": kind} if kind else {}
        if bot:
            headers["Authorization"] = f"Bot {self.settings.bot_token}"
        try:
            async with self.session.request(method, url, data=body, headers=headers) as response:
                text = await response.text()
                if response.status >= 300:
                    raise DiscordApiError(what, response.status, f": {_reason(text)}")
                return json.loads(text) if text.strip() else {}
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise DiscordApiError(what, None, f" ({type(exc).__name__})") from exc


def _reason(text: str) -> str:
    try:
        found = json.loads(text)
    except ValueError:
        return text[:80]
    return str(found.get("message", ""))[:80] if isinstance(found, dict) else ""
