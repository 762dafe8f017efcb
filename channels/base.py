"""The channel contract: parse config once, render purely, send once, classify the outcome."""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from db.alerts import Alert


class DeliveryStatus(enum.StrEnum):
    DELIVERED = "delivered"
    TRANSIENT = "transient"  # worth retrying
    PERMANENT = "permanent"  # retrying cannot help


@dataclass(frozen=True, slots=True)
class Rendered:
    """What a channel will send, built without I/O."""

    title: str
    text: str
    severity: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Delivery:
    status: DeliveryStatus
    detail: str | None = None
    retry_after: float | None = None


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
