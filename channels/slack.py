"""Slack: Block Kit through an incoming webhook, or ``chat.postMessage`` with a bot token.

Give either ``webhook_url`` or ``token`` (``xoxb-…``) with ``channel`` (an id such as C0123ABC).
``api_base`` (default https://slack.com/api) moves the Web API, for a local test peer.

``buttons: true`` (bot token only) adds Acknowledge / Snooze 1h·4h·24h / Resolve.  A click goes
to the interactivity Request URL of the app that *posted* the message, so this is only for a
token of CareBeacon's own Slack app (its Request URL is our ``/slack/events``).  An incoming
webhook cannot carry them usefully: its clicks go to whichever app owns the webhook, and the
webhook cannot edit the card afterwards, so webhook alerts keep the plain "Open alert" link.

Alert text is escaped the way Slack documents (``&``, ``<``, ``>``), so it can never form a
link or an ``<!everyone>`` mention.  The Web API answers HTTP 200 with ``{"ok": false,
"error": …}`` for most refusals; those codes are classified below, after the HTTP status.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from channels import http
from channels.base import Channel, Delivery, DeliveryStatus, Rendered
from channels.errors import ConfigError
from db.alerts import Alert

API_BASE = "https://slack.com/api"
WEBHOOK_HOSTS = ("hooks.slack.com", "hooks.slack-gov.com")
EMOJI = {"info": ":information_source:", "warning": ":warning:", "critical": ":rotating_light:"}
_CHANNEL = re.compile(r"^[A-Z][A-Z0-9]{6,}$")

# The alert buttons of the chat front ends (``bot.commands.Action`` takes its values from here:
# channels/ may not import bot/).  Wire format: ``action_id`` = the action, ``value`` = the
# button id ``f"{action}:{alert_id}"``; Discord's ``custom_id`` is the same button id.
ALERT_ACTIONS = ("ack", "snooze1h", "snooze4h", "snooze24h", "resolve")
ALERT_LABELS = dict(zip(ALERT_ACTIONS, ("Acknowledge", "Snooze 1h", "Snooze 4h", "Snooze 24h", "Resolve"), strict=True))


def alert_buttons(alert: Alert) -> list[tuple[str, str, str]]:
    """(action, label, button id) for the buttons ``alert`` still offers: Acknowledge only while
    open, none once resolved."""
    if alert.status == "resolved":
        return []
    wanted = [a for a in ALERT_ACTIONS if a != "ack" or alert.status == "open"]
    return [(a, ALERT_LABELS[a], f"{a}:{alert.id}") for a in wanted]


# Web API ``error`` codes that are not a plain permanent refusal.
_AUTH = {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired", "no_permission"}
_AUTH |= {"missing_scope", "not_allowed_token_type", "ekm_access_denied"}
_TRANSIENT = {"internal_error", "fatal_error", "service_unavailable", "request_timeout"}


def escape(text: str) -> str:
    """Slack's mrkdwn escaping: only these three characters are control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@dataclass(frozen=True, slots=True)
class SlackConfig:
    webhook_url: str | None = field(default=None, repr=False)  # the path holds the webhook's secret
    token: str | None = field(default=None, repr=False)
    channel: str | None = None
    api_base: str = API_BASE
    link_base: str | None = None
    buttons: bool = False  # the token is CareBeacon's own app: its clicks come back to us


class Slack(Channel):
    kind = "slack"
    secret_fields: ClassVar[tuple[str, ...]] = ("webhook_url", "token")

    def __init__(self, config: SlackConfig, transport: http.Transport) -> None:
        self.config, self.transport = config, transport

    @classmethod
    def parse_config(cls, raw: dict[str, Any], *, transport: http.Transport | None = None) -> Slack:
        """Raises ConfigError.  A webhook URL must be on hooks.slack.com unless private destinations are allowed."""
        transport = transport or http.default_transport()
        policy = transport.policy
        http.check_fields("slack", raw, {"webhook_url", "token", "channel", "api_base", "link_base", "buttons"})
        link_base = http.link_field("slack", raw, policy)
        if raw.get("webhook_url") is not None:
            if {"token", "channel", "api_base"} & set(raw):
                raise ConfigError("slack: give webhook_url, or token and channel, not both")
            if raw.get("buttons"):
                raise ConfigError("slack: buttons need a bot token of CareBeacon's Slack app, not a webhook")
            url, host = http.url_field("slack", raw, "webhook_url", policy)
            if host not in WEBHOOK_HOSTS and not policy.allow_private:
                raise ConfigError("slack: webhook_url must be on hooks.slack.com")
            return cls(SlackConfig(webhook_url=url, link_base=link_base), transport)
        token = http.text_field("slack", raw, "token")
        channel = http.text_field("slack", raw, "channel")
        if token is None or channel is None:
            raise ConfigError("slack: give webhook_url, or token and channel")
        if not token.startswith(("xoxb-", "xoxp-")) or any(c.isspace() for c in token):
            raise ConfigError("slack: token must be a bot token (xoxb-…)")
        if not _CHANNEL.match(channel):
            raise ConfigError("slack: channel must be a channel id such as C0123456789")
        api_base = API_BASE
        if raw.get("api_base") is not None:
            api_base = http.url_field("slack", raw, "api_base", policy)[0].rstrip("/")
        buttons = raw.get("buttons", False)
        if not isinstance(buttons, bool):
            raise ConfigError("slack: buttons must be true or false")
        config = SlackConfig(token=token, channel=channel, api_base=api_base, link_base=link_base, buttons=buttons)
        return cls(config, transport)

    def render(self, alert: Alert) -> Rendered:
        when = http.when(alert)
        header = http.clip(f"{alert.severity.upper()}: {alert.title}", 150)
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": header, "emoji": True}},
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": http.clip(escape(alert.body), 3000)},
                "fields": [
                    {"type": "mrkdwn", "text": http.clip(f"*{k}*\n{escape(v)}", 2000)} for k, v in http.facts(alert)
                ],
            },
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": f"{EMOJI.get(alert.severity, '')} {escape(alert.patient)} · "
                        f"<!date^{int(when.timestamp())}^{{date_short_pretty}} {{time}}|{when.isoformat()}>",
                    }
                ],
            },
        ]
        elements: list[dict[str, Any]] = []
        if self.config.buttons:
            elements += [_button(action, label, button_id) for action, label, button_id in alert_buttons(alert)]
        if link := http.alert_link(self.config.link_base, alert.id):
            elements.append({"type": "button", "text": {"type": "plain_text", "text": "Open alert"}, "url": link})
        if elements:
            blocks.append({"type": "actions", "elements": elements})
        # The fallback shown in notifications and to clients that cannot draw blocks.
        text = escape(f"[{alert.severity.upper()}] {alert.patient}: {alert.title}")
        return Rendered(alert.title, text, alert.severity, {"text": text, "blocks": blocks})

    async def send(self, message: Rendered) -> Delivery:
        if self.config.webhook_url is not None:
            url = self.config.webhook_url
            reply = await self.transport.post("slack", url, json.dumps(message.payload).encode())
            return reply if isinstance(reply, Delivery) else http.classify("slack", reply, url)
        assert self.config.token is not None
        url = f"{self.config.api_base}/chat.postMessage"
        body = json.dumps({"channel": self.config.channel} | message.payload).encode()
        headers = {"Content-Type": "application/json; charset=utf-8", "Authorization": f"Bearer {self.config.token}"}
        reply = await self.transport.post("slack", url, body, headers)
        if isinstance(reply, Delivery):
            return reply
        outcome = http.classify("slack", reply, url, secrets=(self.config.token,))
        document = reply.json()
        if outcome.status is not DeliveryStatus.DELIVERED or not isinstance(document, dict) or document.get("ok"):
            return outcome
        return _api_error(document.get("error"), reply)


def _button(action: str, label: str, button_id: str) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button", "action_id": action, "value": button_id,
        "text": {"type": "plain_text", "text": label, "emoji": True},
    }  # fmt: skip
    if action == "resolve":
        button["style"] = "danger"
        button["confirm"] = {
            "title": {"type": "plain_text", "text": "Are you sure?"},
            "text": {"type": "plain_text", "text": "Resolve this alert?"},
            "confirm": {"type": "plain_text", "text": "Resolve"},
            "deny": {"type": "plain_text", "text": "Cancel"},
        }
    return button


def _api_error(error: Any, reply: http.Reply) -> Delivery:
    """The Delivery for a Web API ``{"ok": false, "error": …}`` answer."""
    code = error if isinstance(error, str) and error.replace("_", "").isalnum() else "unknown_error"
    detail = f"slack: ok=false: {http.clip(code, 60)}"
    if code == "ratelimited":
        return Delivery(DeliveryStatus.RATE_LIMITED, detail, http.retry_after(reply), reply.status)
    if code in _AUTH:
        return Delivery(DeliveryStatus.AUTH, detail, http_status=reply.status)
    if code in _TRANSIENT:
        return Delivery(DeliveryStatus.TRANSIENT, detail, http_status=reply.status)
    return Delivery(DeliveryStatus.PERMANENT, detail, http_status=reply.status)
