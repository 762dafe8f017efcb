"""Microsoft Teams: an Adaptive Card (1.4) posted to a Workflows (Power Automate) webhook.

The Office 365 connector URLs (``*.webhook.office.com``) are retired and refused with a
message that says so.  A Workflows URL carries its credential in the ``sig`` query value, so
the URL is a secret.  A 202 only means the flow accepted the request, not that the message was
posted: that is all Teams tells us.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

from channels import http
from channels.base import Channel, Delivery, Rendered
from channels.errors import ConfigError
from db.alerts import Alert

CARD_VERSION = "1.4"  # what Teams renders on every client
HOST_SUFFIXES = (".logic.azure.com", ".api.powerplatform.com")
COLOURS = {"info": "Default", "warning": "Warning", "critical": "Attention"}
TEXT_LIMIT = 3000  # Teams refuses messages over about 28 KB; an alert needs far less


@dataclass(frozen=True, slots=True)
class TeamsConfig:
    url: str = field(repr=False)  # the ``sig`` query value signs the request
    host: str
    link_base: str | None = None


class Teams(Channel):
    kind = "teams"
    secret_fields: ClassVar[tuple[str, ...]] = ("url",)

    def __init__(self, config: TeamsConfig, transport: http.Transport) -> None:
        self.config, self.transport = config, transport

    @classmethod
    def parse_config(cls, raw: dict[str, Any], *, transport: http.Transport | None = None) -> Teams:
        """``url`` is a Workflows trigger URL (``…/workflows/<id>/triggers/…?…&sig=…``) on
        logic.azure.com or api.powerplatform.com; any host when private destinations are allowed.
        Raises ConfigError."""
        transport = transport or http.default_transport()
        http.check_fields("teams", raw, {"url", "link_base"})
        url, host = http.url_field("teams", raw, "url", transport.policy)
        if host.endswith(".webhook.office.com") or host == "outlook.office.com":
            raise ConfigError("teams: Office 365 connector URLs are retired; create a Workflows webhook instead")
        parts = urlsplit(url)
        if "/workflows/" not in parts.path or "/triggers/" not in parts.path or "sig" not in parse_qs(parts.query):
            raise ConfigError("teams: url must be a Workflows webhook URL (…/workflows/<id>/triggers/…&sig=…)")
        if not host.endswith(HOST_SUFFIXES) and not transport.policy.allow_private:
            raise ConfigError("teams: url must be on logic.azure.com or api.powerplatform.com")
        return cls(TeamsConfig(url, host, http.link_field("teams", raw, transport.policy)), transport)

    def render(self, alert: Alert) -> Rendered:
        when = http.when(alert)
        facts = [*http.facts(alert), ("Severity", alert.severity), ("Recorded", when.isoformat())]
        card: dict[str, Any] = {
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard",
            "version": CARD_VERSION,
            "fallbackText": f"[{alert.severity.upper()}] {alert.patient}: {alert.title}",
            "body": [
                {
                    "type": "TextBlock",
                    "text": alert.title,
                    "weight": "Bolder",
                    "size": "Large",
                    "color": COLOURS.get(alert.severity, "Default"),
                    "wrap": True,
                },
                {"type": "TextBlock", "text": http.clip(alert.body, TEXT_LIMIT), "wrap": True},
                {"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in facts]},
            ],
        }
        if link := http.alert_link(self.config.link_base, alert.id):
            card["actions"] = [{"type": "Action.OpenUrl", "title": "Open alert", "url": link}]
        payload = {
            "type": "message",
            "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "content": card}],
        }
        return Rendered(alert.title, alert.body, alert.severity, payload)

    async def send(self, message: Rendered) -> Delivery:
        reply = await self.transport.post("teams", self.config.url, json.dumps(message.payload).encode())
        return reply if isinstance(reply, Delivery) else http.classify("teams", reply, self.config.url)
