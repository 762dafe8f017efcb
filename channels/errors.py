"""Delivery errors.

    DeliveryError
    ├── TransientDeliveryError   the peer may accept it later (timeout, 429, 5xx): retry
    └── PermanentDeliveryError   it never will (bad config, 4xx, deleted target): stop

Channels return a Delivery rather than raise for outcomes they understand; these errors are
for the routing layer to tell the actor what to do with the whole alert.
"""

from __future__ import annotations


class DeliveryError(Exception):
    pass


class TransientDeliveryError(DeliveryError):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentDeliveryError(DeliveryError):
    pass


class ConfigError(PermanentDeliveryError):
    """A channel's configuration is invalid; the message is safe to show to the person who entered it."""
