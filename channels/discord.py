"""Discord: one embed per alert, through a channel webhook (``POST {url}?wait=true``), or as
CareBeacon's bot (``bot_token`` + ``channel_id``: ``POST /channels/{id}/messages``).

Only the bot mode carries Acknowledge / Snooze / Resolve buttons: a plain webhook drops
interactive components, and a click on a bot message reaches the interactions endpoint (or
gateway) of the bot's application, so ``bot_token`` must be CareBeacon's own application's
bot, which needs Send Messages and Embed Links in the channel.  ``api_base`` (default
https://discord.com/api/v10) moves the API, for a local test peer.

Alert text can never ping anyone: ``allowed_mentions.parse`` is empty, and the only mention
ever allowed is the configured ``critical_mention``, on critical alerts.  A 429 waits for
``X-RateLimit-Reset-After``, ``Retry-After`` or the body's ``retry_after``; a 404 means the
webhook was deleted, which no retry can fix.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlsplit

from channels import http
from channels.base import Channel, Delivery, DeliveryStatus, Rendered
from channels.errors import ConfigError
from channels.slack import alert_buttons
from db.alerts import Alert

COLOURS = {"info": 0x3498DB, "warning": 0xF39C12, "critical": 0xE74C3C}
HOSTS = ("discord.com", "discordapp.com", "canary.discord.com", "ptb.discord.com")
_PATH = re.compile(r"^/api(?:/v\d+)?/webhooks/\d+/[\w-]+/?$")
_SNOWFLAKE = re.compile(r"^\d{5,25}$")
API_BASE = "https://discord.com/api/v10"
# Button styles: 1 primary, 2 secondary, 4 danger.
_STYLES = {"ack": 1, "resolve": 4}
_MENTION = re.compile(r"^(?:(role|user):(\d{5,25})|<@(&?)(\d{5,25})>)$")


@dataclass(frozen=True, slots=True)
class DiscordConfig:
    url: str = field(repr=False)  # the path holds the webhook's token; in bot mode, the channel's messages
    host: str
    critical_mention: tuple[str, str] | None = None  # ("role" | "user", id)
    link_base: str | None = None
    bot_token: str | None = field(default=None, repr=False)  # bot mode: alerts carry buttons


class Discord(Channel):
    kind = "discord"
    secret_fields: ClassVar[tuple[str, ...]] = ("url", "bot_token")

    def __init__(self, config: DiscordConfig, transport: http.Transport) -> None:
        self.config, self.transport = config, transport

    @classmethod
    def parse_config(cls, raw: dict[str, Any], *, transport: http.Transport | None = None) -> Discord:
        """``url`` must be a Discord webhook URL (``/api/webhooks/<id>/<token>`` on discord.com or
        discordapp.com); with private destinations allowed (tests, local development) any host
        may serve that path.  Raises ConfigError."""
        transport = transport or http.default_transport()
        known = {"url", "critical_mention", "link_base", "bot_token", "channel_id", "api_base"}
        http.check_fields("discord", raw, known)
        bot_token = None
        if raw.get("bot_token") is not None or raw.get("channel_id") is not None:
            if raw.get("url") is not None:
                raise ConfigError("discord: give url, or bot_token and channel_id, not both")
            url, host, bot_token = cls._bot(raw, transport)
        else:
            if raw.get("api_base") is not None:
                raise ConfigError("discord: api_base goes with bot_token and channel_id")
            url, host = http.url_field("discord", raw, "url", transport.policy)
            parts = urlsplit(url)
            if parts.query or parts.fragment or not _PATH.match(parts.path):
                raise ConfigError("discord: url must be a webhook URL ending /api/webhooks/<id>/<token>")
            if host not in HOSTS and not transport.policy.allow_private:
                raise ConfigError("discord: url must be on discord.com")
        mention = None
        if raw.get("critical_mention") is not None:
            found = _MENTION.match(str(raw["critical_mention"]).strip())
            if found is None:
                raise ConfigError("discord: critical_mention must be role:<id>, user:<id>, <@&id> or <@id>")
            kind, snowflake, amp, other = found.groups()
            mention = (kind, snowflake) if kind else ("role" if amp else "user", other)
        link_base = http.link_field("discord", raw, transport.policy)
        return cls(DiscordConfig(url, host, mention, link_base, bot_token), transport)

    @staticmethod
    def _bot(raw: dict[str, Any], transport: http.Transport) -> tuple[str, str, str]:
        token = http.text_field("discord", raw, "bot_token")
        channel = http.text_field("discord", raw, "channel_id")
        if token is None or channel is None:
            raise ConfigError("discord: give url, or bot_token and channel_id")
        if any(c.isspace() for c in token) or token.lower().startswith(("bot ", "bearer ")):
            raise ConfigError("discord: bot_token must be the bare bot token (without 'Bot ')")
        if not _SNOWFLAKE.match(channel):
            raise ConfigError("discord: channel_id must be a channel's id (digits)")
        base, host = API_BASE, "discord.com"
        if raw.get("api_base") is not None:
            base, host = http.url_field("discord", raw, "api_base", transport.policy)
        return f"{base.rstrip('/')}/channels/{channel}/messages", host, token

    def render(self, alert: Alert) -> Rendered:
        # Limits: title 256, description 4096, field value 1024, footer 2048 characters.
        embed: dict[str, Any] = {
            "title": http.clip(alert.title, 256),
            "description": http.clip(alert.body, 4096),
            "color": COLOURS.get(alert.severity, COLOURS["info"]),
            "fields": [{"name": k, "value": http.clip(v, 1024), "inline": True} for k, v in http.facts(alert)],
            "timestamp": http.when(alert).isoformat(),
            "footer": {"text": f"CareBeacon · {alert.severity} · {alert.category}"},
        }
        if link := http.alert_link(self.config.link_base, alert.id):
            embed["url"] = link
        payload: dict[str, Any] = {"embeds": [embed], "allowed_mentions": {"parse": []}}
        if self.config.bot_token is not None:
            buttons = [
                {"type": 2, "style": _STYLES.get(action, 2), "label": label, "custom_id": button_id}
                for action, label, button_id in alert_buttons(alert)
            ]
            payload["components"] = [{"type": 1, "components": buttons}] if buttons else []
        if alert.severity == "critical" and self.config.critical_mention is not None:
            kind, snowflake = self.config.critical_mention
            payload["content"] = f"<@&{snowflake}>" if kind == "role" else f"<@{snowflake}>"
            payload["allowed_mentions"] = {"parse": [], f"{kind}s": [snowflake]}
        return Rendered(alert.title, alert.body, alert.severity, payload)

    async def send(self, message: Rendered) -> Delivery:
        body = json.dumps(message.payload).encode()
        if self.config.bot_token is not None:
            url = self.config.url
            headers = {"Authorization": f"Bot {self.config.bot_token}"}
            reply = await self.transport.post("discord", url, body, headers)
        else:
            url = self.config.url.rstrip("/") + "?wait=true"
            reply = await self.transport.post("discord", url, body)
        if isinstance(reply, Delivery):
            return reply
        outcome = http.classify("discord", reply, url, secrets=tuple(filter(None, [self.config.bot_token])))
        if outcome.status is DeliveryStatus.DELIVERED and reply.headers.get("x-ratelimit-remaining") == "0":
            # Delivered, but the bucket is empty: the log says when it refills (Dramatiq paces retries,
            # not us; the next send that comes too early gets a 429 with the same wait).
            reset = http.retry_after(reply)
            detail = "discord: rate-limit bucket empty" + (f"; resets in {reset:g} s" if reset is not None else "")
            return Delivery(outcome.status, detail, reset, reply.status)
        return outcome
