"""Discord's request signature: Ed25519 over ``X-Signature-Timestamp + raw body``.

Discord documents no replay window (its samples check only the signature).  Ours: a
timestamp more than ``WINDOW`` seconds away from our clock, in either direction, is refused,
the same five minutes Slack's signing uses; within it, an interaction id seen before is
refused too (a replay), remembered per process.  Discord sends deliberately bad signatures
as a routine check and removes the endpoint if one is accepted: every failure is a 401.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

WINDOW = 300  # seconds
_SEEN_MAX = 100_000  # ids kept; at 200 interactions/s that is over 8 minutes, longer than WINDOW


class Verifier:
    def __init__(self, public_key_hex: str, *, clock: Callable[[], float] = time.time, window: int = WINDOW) -> None:
        self.key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key_hex))
        self.clock, self.window = clock, window
        self._seen: OrderedDict[str, float] = OrderedDict()

    def valid(self, signature: str | None, timestamp: str | None, body: bytes) -> bool:
        """Whether the headers sign ``body`` with our key, at a fresh timestamp."""
        if not signature or not timestamp or not timestamp.isdigit():
            return False
        if abs(self.clock() - int(timestamp)) > self.window:
            return False
        try:
            self.key.verify(bytes.fromhex(signature), timestamp.encode() + body)
        except (InvalidSignature, ValueError):
            return False
        return True

    def first_time(self, interaction_id: str) -> bool:
        """False when this id was seen within the window (a replayed request); remembers it."""
        now = self.clock()
        while self._seen and (len(self._seen) >= _SEEN_MAX or next(iter(self._seen.values())) < now - self.window):
            self._seen.popitem(last=False)
        if interaction_id in self._seen:
            return False
        self._seen[interaction_id] = now
        return True
