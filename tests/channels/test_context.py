"""Opening a stored channel for sending: the deployment's VAPID key and the webhook's own id."""

from __future__ import annotations

import base64
import secrets
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from channels.context import DeploymentKeys, SendContext, open_channel
from channels.webhook import Webhook
from channels.webpush import Vapid, WebPush
from db import push
from db.notification_channels import CONFIG, TABLE, ChannelRow
from db.sealing import Keyring


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


KEYRING = Keyring.parse(Keyring.new_entry("ctx"))
BROWSER_KEY = ec.generate_private_key(ec.SECP256R1()).public_key()
SUBSCRIPTION = {
    "endpoint": "https://push.example.com/send/abc",
    "keys": {
        "p256dh": b64url(BROWSER_KEY.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)),
        "auth": b64url(secrets.token_bytes(16)),
    },
}


def stored(channel_id: int, kind: str, config: dict[str, Any]) -> ChannelRow:
    sealed = KEYRING.seal_json(config, table=TABLE, column=CONFIG, row_id=channel_id)
    return ChannelRow(channel_id, 1, kind, kind, sealed)


def test_a_web_push_channel_gets_the_deployment_vapid_identity_when_there_is_one() -> None:
    vapid = Vapid(push.VapidKeys.generate(), "mailto:ops@carebeacon.test")
    row = stored(7, "webpush", SUBSCRIPTION)

    with_key = open_channel(row, SendContext(KEYRING, DeploymentKeys(vapid=vapid)))
    without = open_channel(row, SendContext(KEYRING))

    assert isinstance(with_key, WebPush) and with_key.vapid is vapid
    assert isinstance(without, WebPush) and without.vapid is None


def test_a_webhook_channel_is_told_its_own_id_so_each_channel_gets_its_own_webhook_id() -> None:
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    first = open_channel(
        stored(11, "webhook", {"url": "https://hooks.example.com/a", "secret": secret}), SendContext(KEYRING)
    )
    second = open_channel(
        stored(12, "webhook", {"url": "https://hooks.example.com/a", "secret": secret}), SendContext(KEYRING)
    )

    assert isinstance(first, Webhook) and isinstance(second, Webhook)
    assert (first.config.channel_id, second.config.channel_id) == (11, 12)


def test_a_channel_is_built_once_per_sealed_config_and_again_when_it_changes() -> None:
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    context = SendContext(KEYRING)
    row = stored(21, "webhook", {"url": "https://hooks.example.com/a", "secret": secret})
    changed = stored(21, "webhook", {"url": "https://hooks.example.com/b", "secret": secret})

    first, again = open_channel(row, context), open_channel(row, SendContext(KEYRING))
    moved = open_channel(changed, context)

    assert first is again
    assert isinstance(moved, Webhook) and moved is not first and moved.config.url.endswith("/b")
