"""ntfy: one push per alert, published as JSON to the server's root URL.

ntfy documents two ways to publish: headers on ``POST /<topic>``, or a JSON document on
``POST /``.  Header values must be Latin-1 on the wire, so an emoji in a title needs RFC 2047
encoding there; the JSON form is UTF-8 throughout, so we use it for everything.

Severity sets the priority (info 3, warning 4, critical 5; on Android priority 5 can break
through Do Not Disturb).  On ntfy.sh anyone who knows a topic can read it, so the topic is a
secret, like the optional access token (``tk_…``), sent as ``Authorization: Bearer``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from channels import http
from channels.base import Channel, Delivery, Rendered
from channels.errors import ConfigError
from db.alerts import Alert

SERVER = "https://ntfy.sh"
PRIORITY = {"info": 3, "warning": 4, "critical": 5}
TAGS = {"info": "information_source", "warning": "warning", "critical": "rotating_light"}
MESSAGE_LIMIT = 3500  # ntfy turns a message over 4096 bytes into an attachment; stay well below
_TOPIC = re.compile(r"^[-_A-Za-z0-9]{1,64}$")


@dataclass(frozen=True, slots=True)
class NtfyConfig:
    topic: str = field(repr=False)
    server: str = SERVER
    token: str | None = field(default=None, repr=False)
    link_base: str | None = None


class Ntfy(Channel):
    kind = "ntfy"
    secret_fields: ClassVar[tuple[str, ...]] = ("topic", "token")

    def __init__(self, config: NtfyConfig, transport: http.Transport) -> None:
        self.config, self.transport = config, transport

    @classmethod
    def parse_config(cls, raw: dict[str, Any], *, transport: http.Transport | None = None) -> Ntfy:
        """``topic`` (letters, digits, ``-``, ``_``; at most 64), optional ``server`` (default
        https://ntfy.sh), ``token`` and ``link_base``.  Raises ConfigError."""
        transport = transport or http.default_transport()
        http.check_fields("ntfy", raw, {"server", "topic", "token", "link_base"})
        topic = http.text_field("ntfy", raw, "topic", required=True)
        if topic is None or not _TOPIC.match(topic):
            raise ConfigError("ntfy: topic must be 1 to 64 letters, digits, '-' or '_'")
        server = SERVER
        if raw.get("server") is not None:
            server = http.url_field("ntfy", raw, "server", transport.policy)[0].rstrip("/")
        token = http.text_field("ntfy", raw, "token")
        if token is not None and any(c.isspace() for c in token):
            raise ConfigError("ntfy: token must be an access token such as tk_…")
        link_base = http.link_field("ntfy", raw, transport.policy)
        return cls(NtfyConfig(topic, server, token, link_base), transport)

    def render(self, alert: Alert) -> Rendered:
        facts = " · ".join(f"{k}: {v}" for k, v in http.facts(alert))
        payload: dict[str, Any] = {
            "title": alert.title,
            "message": http.clip(f"{alert.body}\n{facts}", MESSAGE_LIMIT),
            "priority": PRIORITY.get(alert.severity, 3),
            "tags": [TAGS.get(alert.severity, "information_source"), alert.category],
        }
        if link := http.alert_link(self.config.link_base, alert.id):
            payload["click"] = link
            payload["actions"] = [{"action": "view", "label": "Open alert", "url": link}]
        return Rendered(alert.title, payload["message"], alert.severity, payload)

    async def send(self, message: Rendered) -> Delivery:
        # The topic joins only here, so a rendered message never holds a secret.
        body = json.dumps({"topic": self.config.topic} | message.payload).encode()
        url = self.config.server + "/"
        headers = {"Authorization": f"Bearer {self.config.token}"} if self.config.token else {}
        reply = await self.transport.post("ntfy", url, body, headers)
        if isinstance(reply, Delivery):
            return reply
        secrets = tuple(s for s in (self.config.topic, self.config.token) if s)
        return http.classify("ntfy", reply, url, secrets=secrets)
