"""The channel contract: parse config once, render purely, send once, classify the outcome."""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from db.alerts import Alert


class DeliveryStatus(enum.StrEnum):
    """How one send ended; the delivery log's error class comes from it."""

    DELIVERED = "delivered"
    TRANSIENT = "transient"  # worth retrying: timeout, connection error, 5xx, 408, 425
    RATE_LIMITED = "rate_limited"  # 429: retry after ``retry_after``
    PERMANENT = "permanent"  # retrying cannot help: other 4xx, a payload the peer refuses
    AUTH = "auth"  # the peer refused our credentials (401/403): fix the channel's config
    GONE = "gone"  # the destination no longer exists (Web Push 404/410): prune it


@dataclass(frozen=True, slots=True)
class Rendered:
    """What a channel will send, built without I/O."""

    title: str
    text: str
    severity: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Delivery:
    """``detail`` is safe to log: never a secret, a token or a full webhook URL."""

    status: DeliveryStatus
    detail: str | None = None
    retry_after: float | None = None
    http_status: int | None = None

    @property
    def retryable(self) -> bool:
        return self.status in (DeliveryStatus.TRANSIENT, DeliveryStatus.RATE_LIMITED)


class Channel(ABC):
    """One kind of destination.  Subclasses set ``kind`` and implement the three steps."""

    kind: ClassVar[str]

    @classmethod
    @abstractmethod
    def parse_config(cls, raw: dict[str, Any]) -> Channel:
        """A channel built from stored config; raises ConfigError with a message fit for a 4xx."""

    @abstractmethod
    def render(self, alert: Alert) -> Rendered:
        """Pure: no I/O, no database."""

    @abstractmethod
    async def send(self, message: Rendered) -> Delivery:
        """The only I/O.  Never raises for an outcome it can classify."""
