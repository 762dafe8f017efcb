"""A local Web Push service (RFC 8030) and the browsers that subscribe to it.

It checks what a real push service checks, then decrypts what only the browser could:

* ``Authorization: vapid t=<JWT>, k=<key>``: an ES256 signature by ``k``, ``aud`` equal to its
  own origin, ``exp`` in the next 24 h, a ``sub``; and ``k`` equal to the applicationServerKey
  the subscription was made with (403 otherwise, as FCM and autopush answer).
* ``TTL``, ``Content-Encoding: aes128gcm``, ``Urgency`` and ``Topic`` well formed (400 otherwise).
* The body, decrypted with http_ece and the subscription's private key and auth secret.

A subscription's ``answer`` (and ``retry_after``, ``delay``) sets what it replies: 201 by default.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import http_ece
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

URGENCIES = ("very-low", "low", "normal", "high")


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Push:
    headers: dict[str, str]
    claims: dict[str, Any]
    vapid_key: str
    data: dict[str, Any]


@dataclass
class Subscription:
    """What a browser holds after ``pushManager.subscribe``: its own key pair and auth secret."""

    token: str
    endpoint: str
    application_server_key: str
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)
    auth: bytes = field(repr=False)
    answer: int = 201
    retry_after: str | None = None
    delay: float = 0.0
    received: list[Push] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """``PushSubscription.toJSON()`` as the browser would hand it to our page."""
        public = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {"p256dh": b64url(public), "auth": b64url(self.auth)},
        }


class FakePushService:
    def __init__(self) -> None:
        self.subscriptions: dict[str, Subscription] = {}
        self.refusals: list[str] = []  # why requests were refused, for failing tests to show
        self.origin = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> FakePushService:
        app = web.Application()
        app.router.add_post("/push/{token}", self._push)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.origin = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def subscribe(self, application_server_key: str) -> Subscription:
        token = secrets.token_urlsafe(24)
        found = Subscription(
            token,
            f"{self.origin}/push/{token}",
            application_server_key,
            ec.generate_private_key(ec.SECP256R1()),
            secrets.token_bytes(16),
        )
        self.subscriptions[token] = found
        return found

    def _refuse(self, status: int, reason: str) -> web.Response:
        self.refusals.append(reason)
        return web.Response(status=status, text=reason)

    async def _push(self, request: web.Request) -> web.Response:
        sub = self.subscriptions.get(request.match_info["token"])
        if sub is None:
            return web.Response(status=404)
        if sub.delay:
            await asyncio.sleep(sub.delay)
        claims, key = self._verify_vapid(request.headers.get("Authorization", ""))
        if claims is None:
            return self._refuse(401, key)
        if key != sub.application_server_key:
            return self._refuse(403, "the VAPID key is not the one the subscription was made with")
        problem = _header_problem(request.headers)
        if problem:
            return self._refuse(400, problem)
        body = await request.read()
        try:
            plain = http_ece.decrypt(body, private_key=sub.private_key, auth_secret=sub.auth, version="aes128gcm")
        except Exception as exc:  # noqa: BLE001  (any decryption failure is the sender's)
            return self._refuse(400, f"cannot decrypt: {exc!r}")
        if sub.answer >= 300:
            headers = {"Retry-After": sub.retry_after} if sub.retry_after else {}
            return web.Response(status=sub.answer, headers=headers)
        sub.received.append(Push(dict(request.headers), claims, key, json.loads(plain)))
        return web.Response(status=201, headers={"Location": f"{self.origin}/message/{secrets.token_hex(8)}"})

    def _verify_vapid(self, header: str) -> tuple[dict[str, Any] | None, str]:
        """The JWT's claims and the ``k`` key; or None and why."""
        match = re.fullmatch(r"vapid t=([\w.-]+),\s*k=([\w-]+)", header)
        if match is None:
            return None, "no vapid t=…, k=… authorization"
        token, key = match.groups()
        try:
            signing_input, signature = token.rsplit(".", 1)
            raw = unb64url(signature)
            public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(key))
            der = utils.encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
            public.verify(der, signing_input.encode(), ec.ECDSA(hashes.SHA256()))
            head, payload = (json.loads(unb64url(part)) for part in signing_input.split("."))
        except (InvalidSignature, ValueError):
            return None, "bad JWT signature"
        now = time.time()
        if head.get("alg") != "ES256":
            return None, "JWT alg is not ES256"
        if payload.get("aud") != self.origin:
            return None, f"aud {payload.get('aud')!r} is not {self.origin!r}"
        if not now < payload.get("exp", 0) <= now + 24 * 3600:
            return None, "exp is not within the next 24 h"
        if not str(payload.get("sub", "")).startswith(("mailto:", "https://")):
            return None, "no mailto: or https: sub"
        return payload, key


def _header_problem(headers: Any) -> str | None:
    if not headers.get("TTL", "").isdigit():
        return "TTL missing or not whole seconds"
    if headers.get("Content-Encoding") != "aes128gcm":
        return "Content-Encoding is not aes128gcm"
    if headers.get("Urgency", "normal") not in URGENCIES:
        return "bad Urgency"
    topic = headers.get("Topic")
    if topic is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", topic):
        return "Topic is not at most 32 base64url characters"
    return None
