"""What sending needs beyond a channel's own config: the keyring that opens it, and material
that belongs to the deployment rather than to any one channel.

The seam for per-deployment keys: Web Push signs with the deployment's VAPID key, which lives
in the database (db.push), not in a channel's config, and a pure render must not fetch it.
The worker loads it once and passes it here; ``open_channel`` is the one place a channel is
built for sending, so it is where a kind that needs such material gets it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from channels.base import Channel
from channels.destinations import ALLOW_PRIVATE
from channels.registry import build_channel
from channels.webpush import Vapid, WebPush
from db.notification_channels import ChannelRow
from db.sealing import Keyring


@dataclass(frozen=True, slots=True)
class DeploymentKeys:
    """``vapid``: what ``WebPush.with_vapid`` takes; None when VAPID_SUBJECT is unset."""

    vapid: Vapid | None = field(default=None, repr=False)


NO_KEYS = DeploymentKeys()


@dataclass(frozen=True, slots=True)
class SendContext:
    keyring: Keyring = field(repr=False)
    keys: DeploymentKeys = NO_KEYS


# Channels built per sealed config, keyring and deployment keys: opening and parsing a config
# cost more than rendering and signing the message.  A changed config is a new sealed string, so
# a new entry; the SSRF policy is read from the environment per build, so its value is part of
# the key.  The opened secrets stay in this process's memory, where the keyring already is.
OPENED_MAX = 512
_opened: dict[tuple[int, str, str, str | None], tuple[SendContext, Channel]] = {}


def open_channel(target: ChannelRow, context: SendContext) -> Channel:
    """The channel ready to send.  Raises ConfigError (bad config) or SealError (will not open)."""
    key = (target.id, target.kind, target.config_sealed, os.environ.get(ALLOW_PRIVATE))
    found = _opened.get(key)
    if found is not None and found[0].keyring is context.keyring and found[0].keys is context.keys:
        return found[1]
    config = target.config(context.keyring)
    if target.kind == "webhook":
        # The webhook-id must be one per (alert, channel), stable across retries.
        config["channel_id"] = target.id
    channel = build_channel(target.kind, config)
    if isinstance(channel, WebPush) and context.keys.vapid is not None:
        channel = channel.with_vapid(context.keys.vapid)
    if len(_opened) >= OPENED_MAX:
        _opened.clear()
    _opened[key] = (context, channel)
    return channel
