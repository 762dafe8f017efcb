"""Standard Webhooks signatures (spec v1.0.0, scheme ``v1``): HMAC-SHA256 over ``id.timestamp.body``.

A secret is written ``whsec_<base64>``; the key is the decoded part after the prefix (24 to 64
bytes).  While a key is rotated we sign with every current secret, so the header holds several
space-separated ``v1,<base64>`` entries and a receiver that knows any one of them accepts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Sequence

PREFIX = "whsec_"
TOLERANCE = 300  # seconds either side of now, as every reference library allows


class SecretError(ValueError):
    """A signing secret is malformed; the message never contains the secret."""


def decode_secret(secret: str) -> bytes:
    """The HMAC key in ``whsec_<base64>``; padding may be left out.  Raises SecretError."""
    if not secret.startswith(PREFIX):
        raise SecretError(f"a signing secret must start with {PREFIX!r}")
    encoded = secret[len(PREFIX) :]
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        raise SecretError("a signing secret must be base64 after its prefix") from None
    if not 24 <= len(key) <= 64:
        raise SecretError("a signing secret must hold 24 to 64 bytes")
    return key


def _signed_content(msg_id: str, timestamp: str, body: bytes) -> bytes:
    if "." in msg_id or "." in timestamp:
        raise ValueError("a message id or timestamp must not contain '.'")
    return f"{msg_id}.{timestamp}.".encode() + body


def sign(secrets: str | Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value: one ``v1,<base64>`` per secret, space-separated.

    ``body`` must be the exact bytes sent.  Raises SecretError for a malformed secret.
    """
    keys = [decode_secret(s) for s in ([secrets] if isinstance(secrets, str) else secrets)]
    if not keys:
        raise SecretError("at least one signing secret is needed")
    content = _signed_content(msg_id, str(timestamp), body)
    return " ".join("v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode() for key in keys)


def verify(secret: str, msg_id: str, timestamp: str, body: bytes, signature: str, *, now: float | None = None) -> bool:
    """Whether ``signature`` (a header value) holds a valid ``v1`` entry for ``secret``.

    False for a timestamp that is not a whole number or lies more than TOLERANCE seconds from
    ``now``; entries of other versions are ignored.  Raises SecretError for a malformed secret.
    """
    key = decode_secret(secret)
    if not timestamp.isdigit() or abs(int(timestamp) - (time.time() if now is None else now)) > TOLERANCE:
        return False
    try:
        content = _signed_content(msg_id, timestamp, body)
    except ValueError:
        return False
    expected = hmac.new(key, content, hashlib.sha256).digest()
    for entry in signature.split():
        version, _, encoded = entry.partition(",")
        if version != "v1":
            continue
        try:
            candidate = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            continue
        if hmac.compare_digest(candidate, expected):
            return True
    return False
