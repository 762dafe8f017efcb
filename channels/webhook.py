"""Webhook: a thin JSON event POSTed to an integrator's URL, signed with Standard Webhooks.

The body is ``{"type": "alert.raised", "timestamp", "data": {ids and summary}}``: no readings
and no patient name; the integrator looks the rest up by id.  Headers: ``webhook-id`` (the same
on every retry of one alert to one channel, so receivers can drop duplicates),
``webhook-timestamp`` (this attempt) and ``webhook-signature`` (one ``v1,…`` per configured
secret: give two while rotating keys).

A 410 means the integrator retired the endpoint: GONE, so the channel can be disabled.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from channels import http, signing
from channels.base import Channel, Delivery, Rendered
from channels.errors import ConfigError
from db.alerts import Alert

EVENT = "alert.raised"
MAX_SECRETS = 10


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    url: str = field(repr=False)  # integrators put tokens in paths and queries
    secrets: tuple[str, ...] = field(repr=False)
    channel_id: int | None = None  # makes webhook-id unique per (alert, channel); see message_id
    link_base: str | None = None


class Webhook(Channel):
    kind = "webhook"
    secret_fields: ClassVar[tuple[str, ...]] = ("url", "secret")

    def __init__(self, config: WebhookConfig, transport: http.Transport) -> None:
        self.config, self.transport = config, transport

    @classmethod
    def parse_config(cls, raw: dict[str, Any], *, transport: http.Transport | None = None) -> Webhook:
        """``url``; ``secret``, one ``whsec_…`` string or a list of them; optional ``link_base`` and
        ``channel_id`` (the channel's row id, set by the router rather than by people).  Raises ConfigError."""
        transport = transport or http.default_transport()
        http.check_fields("webhook", raw, {"url", "secret", "channel_id", "link_base"})
        url, _ = http.url_field("webhook", raw, "url", transport.policy)
        given = raw.get("secret")
        given = [given] if isinstance(given, str) else given
        if not isinstance(given, list) or not 0 < len(given) <= MAX_SECRETS:
            raise ConfigError(f"webhook: secret must be a whsec_ secret or a list of 1 to {MAX_SECRETS}")
        for secret in given:
            try:
                signing.decode_secret(secret if isinstance(secret, str) else "")
            except signing.SecretError as exc:
                raise ConfigError(f"webhook: secret: {exc}") from None
        channel_id = raw.get("channel_id")
        if channel_id is not None and (isinstance(channel_id, bool) or not isinstance(channel_id, int)):
            raise ConfigError("webhook: channel_id must be an integer")
        link_base = http.link_field("webhook", raw, transport.policy)
        return cls(WebhookConfig(url, tuple(given), channel_id, link_base), transport)

    def message_id(self, alert_id: int) -> str:
        """Stable across retries; without a channel id it is unique per alert only."""
        suffix = f"_{self.config.channel_id}" if self.config.channel_id is not None else ""
        return f"msg_alert_{alert_id}{suffix}"

    def render(self, alert: Alert) -> Rendered:
        data: dict[str, Any] = {
            "alert_id": alert.id,
            "tenant_id": alert.tenant_id,
            "user_id": alert.user_id,
            "category": alert.category,
            "severity": alert.severity,
            "metric": alert.metric,
            "title": alert.title,
            "observed_value": alert.observed_value,
            "threshold": alert.threshold,
            "recorded_at": alert.recorded_at.isoformat() if alert.recorded_at else None,
        }
        if link := http.alert_link(self.config.link_base, alert.id):
            data["url"] = link
        payload = {"type": EVENT, "timestamp": alert.created_at.isoformat(), "data": data}
        return Rendered(alert.title, alert.title, alert.severity, payload)

    async def send(self, message: Rendered) -> Delivery:
        # Serialised once: the signature covers exactly these bytes.
        body = json.dumps(message.payload, separators=(",", ":")).encode()
        msg_id = self.message_id(int(message.payload["data"]["alert_id"]))
        timestamp = int(time.time())
        headers = {
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signing.sign(self.config.secrets, msg_id, timestamp, body),
        }
        reply = await self.transport.post("webhook", self.config.url, body, headers)
        if isinstance(reply, Delivery):
            return reply
        return http.classify("webhook", reply, self.config.url, gone=frozenset({410}))
