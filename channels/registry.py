"""Channel kinds by name.  Adding a channel means one module and one line here."""

from __future__ import annotations

from typing import Any

from channels.base import Channel
from channels.console import Console
from channels.discord import Discord
from channels.email import Email
from channels.errors import ConfigError
from channels.ntfy import Ntfy
from channels.slack import Slack
from channels.teams import Teams
from channels.webhook import Webhook
from channels.webpush import WebPush

CHANNELS: dict[str, type[Channel]] = {
    Console.kind: Console,
    Discord.kind: Discord,
    Email.kind: Email,
    Ntfy.kind: Ntfy,
    Slack.kind: Slack,
    Teams.kind: Teams,
    Webhook.kind: Webhook,
    WebPush.kind: WebPush,
}


def build_channel(kind: str, config: dict[str, Any]) -> Channel:
    """Raises ConfigError for an unknown kind or an invalid config."""
    try:
        cls = CHANNELS[kind]
    except KeyError:
        raise ConfigError(f"unknown channel kind {kind!r}; known: {', '.join(sorted(CHANNELS))}") from None
    return cls.parse_config(config)
