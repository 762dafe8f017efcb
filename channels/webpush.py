"""The Web Push channel: one encrypted message to one browser's push subscription.

pywebpush encrypts the payload (RFC 8291, ``aes128gcm``) and py_vapid signs the VAPID JWT
(RFC 8292); ``channels.http.Transport`` posts it like every HTTP channel: the SSRF check, our
timeout, no redirects, and one classification (404 and 410 mean GONE here).  pywebpush's own
senders default to TTL 0 (an offline phone never gets the alert); here TTL is always set.

The deployment's VAPID key lives in the database (``db.push``), and render must not touch it,
so a channel built from its config cannot sign: the caller completes it with ``with_vapid``.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02, VapidException
from pywebpush import WebPusher

from channels import http
from channels.base import Channel, Delivery, DeliveryStatus, Rendered
from channels.errors import ConfigError
from db import env as envlib
from db.alerts import Alert
from db.push import VapidKeys

# RFC 8030 urgency: "high" may wake a sleeping phone, so only a critical alert asks for it.
URGENCY = {"info": "low", "warning": "normal", "critical": "high"}
DEFAULT_TTL = 24 * 3600  # how long the push service keeps it for an offline device
MAX_TTL = 28 * 24 * 3600
MAX_PLAINTEXT = 3993  # push services must take 4096 bytes; the aes128gcm header and tag take the rest
JWT_LIFETIME = 12 * 3600  # RFC 8292 allows at most 24 h
SUBJECT_VARIABLE = "VAPID_SUBJECT"
_SUBJECTS = ("mailto:", "https://")
# The browser unsubscribed, or the subscription expired: prune it, never retry (RFC 8030 §7.3).
GONE = frozenset({404, 410})
_FIELDS = {"endpoint", "keys", "expirationTime", "ttl"}


@dataclass(frozen=True, slots=True)
class Vapid:
    """The deployment's signing identity: its key pair and the ``sub`` contact push services see."""

    keys: VapidKeys
    subject: str

    def __post_init__(self) -> None:
        if not self.subject.startswith(_SUBJECTS):
            raise ValueError("a VAPID subject is a mailto: or https: contact")

    @staticmethod
    def subject_from_env(env: envlib.Env) -> str | None:
        """VAPID_SUBJECT, read once at boot; None when unset (then Web Push cannot send).
        Raises SettingError when it is neither mailto: nor https:."""
        subject = envlib.text(env, SUBJECT_VARIABLE)
        if subject is not None and not subject.startswith(_SUBJECTS):
            raise envlib.SettingError(SUBJECT_VARIABLE, "a mailto: or https: contact", subject)
        return subject


@dataclass(frozen=True, slots=True)
class WebPushConfig:
    endpoint: str = field(repr=False)  # a capability URL: its path identifies the browser
    p256dh: str
    auth: str = field(repr=False)
    ttl: int = DEFAULT_TTL


class WebPush(Channel):
    kind = "webpush"
    secret_fields: ClassVar[tuple[str, ...]] = ("keys.auth",)

    def __init__(self, config: WebPushConfig, transport: http.Transport, vapid: Vapid | None = None) -> None:
        self.config = config
        self.transport = transport
        self.vapid = vapid

    def with_vapid(self, vapid: Vapid) -> WebPush:
        """This channel, able to sign: what the router calls before ``send``."""
        return WebPush(self.config, self.transport, vapid)

    @classmethod
    def parse_config(cls, raw: dict[str, Any], *, transport: http.Transport | None = None) -> WebPush:
        """Takes a browser's ``PushSubscription.toJSON()``, plus an optional ``ttl``.  Raises ConfigError."""
        transport = transport or http.default_transport()
        http.check_fields("webpush", raw, _FIELDS)
        endpoint, _ = http.url_field("webpush", raw, "endpoint", transport.policy)
        if len(endpoint) > 2048:
            raise ConfigError("webpush: endpoint is longer than 2048 characters")
        keys = raw.get("keys")
        if not isinstance(keys, dict) or set(keys) != {"p256dh", "auth"}:
            raise ConfigError("webpush: keys must hold p256dh and auth, as the browser gave them")
        p256dh, auth = _b64(keys["p256dh"]), _b64(keys["auth"])
        try:
            if p256dh is None or len(p256dh) != 65:
                raise ValueError("not an uncompressed point")
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), p256dh)
        except ValueError:
            raise ConfigError("webpush: keys.p256dh is not a P-256 public key") from None
        if auth is None or len(auth) != 16:
            raise ConfigError("webpush: keys.auth must be 16 bytes of base64url")
        ttl = raw.get("ttl", DEFAULT_TTL)
        if isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 <= ttl <= MAX_TTL:
            raise ConfigError(f"webpush: ttl must be whole seconds from 0 to {MAX_TTL}")
        return cls(WebPushConfig(endpoint, keys["p256dh"], keys["auth"], ttl), transport)

    def render(self, alert: Alert) -> Rendered:
        data: dict[str, Any] = {
            "alert_id": alert.id,
            "severity": alert.severity,
            "patient": alert.patient,
            "title": alert.title,
            "body": alert.body,
            "recorded_at": (alert.recorded_at or alert.created_at).isoformat(),
        }
        # Encrypted size must stay under 4 KiB: shorten the body (then the title), never drop fields.
        for key in ("body", "title"):
            while len(_json(data).encode()) > MAX_PLAINTEXT and data[key]:
                data[key] = data[key][: len(data[key]) * 7 // 8]
        # A retry of the same alert replaces its undelivered copy; distinct alerts never collapse.
        payload = {"data": data, "urgency": URGENCY.get(alert.severity, "normal"), "topic": f"alert-{alert.id}"}
        return Rendered(alert.title, alert.body, alert.severity, payload)

    async def send(self, message: Rendered) -> Delivery:
        cfg = self.config
        if self.vapid is None:
            detail = "webpush: cannot sign: no VAPID key and subject were supplied (with_vapid; is VAPID_SUBJECT set?)"
            return Delivery(DeliveryStatus.PERMANENT, detail)
        parts = urlsplit(cfg.endpoint)
        claims = {"aud": f"{parts.scheme}://{parts.netloc}", "exp": int(time.time()) + JWT_LIFETIME}
        try:
            private = ec.derive_private_key(int.from_bytes(self.vapid.keys.private_key, "big"), ec.SECP256R1())
            signed = Vapid02(private).sign(claims | {"sub": self.vapid.subject})
        except VapidException:
            return Delivery(DeliveryStatus.PERMANENT, f"webpush: {SUBJECT_VARIABLE} is not a valid VAPID contact")
        subscription = {"endpoint": cfg.endpoint, "keys": {"p256dh": cfg.p256dh, "auth": cfg.auth}}
        body = WebPusher(subscription).encode(_json(message.payload["data"]).encode(), "aes128gcm")["body"]
        headers = {
            "Authorization": signed["Authorization"],
            "TTL": str(cfg.ttl),  # always set: pywebpush's 0 drops the alert for a phone that is offline
            "Urgency": message.payload["urgency"],
            "Topic": message.payload["topic"],
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
        }
        reply = await self.transport.post("webpush", cfg.endpoint, body, headers)
        if isinstance(reply, Delivery):
            return reply
        # 401/403 come back as AUTH: the VAPID key or signature was refused, so keep the subscription.
        return http.classify("webpush", reply, cfg.endpoint, gone=GONE, secrets=(signed["Authorization"],))


def _b64(value: Any) -> bytes | None:
    if not isinstance(value, str) or not value or len(value) > 200:
        return None
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        return None


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
