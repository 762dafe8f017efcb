"""The provider contract: metadata, capabilities, token refresh, and ``fetch`` as an async iterator
of readings and sessions."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from db.metrics import Reading
from db.sessions import Session

# Refresh a token that expires within this margin, so it cannot lapse mid-sync.
REFRESH_MARGIN = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class Capabilities:
    rest_pull: bool
    webhook_push: bool
    refresh_tokens: bool
    max_history_days: int | None


@dataclass(frozen=True, slots=True)
class Window:
    """What one fetch reads: ``start``..``end`` and, when a push named what changed, ``only``
    those of the provider's own collections.  A provider that cannot narrow by collection
    reads them all, which is never wrong, only slower."""

    start: datetime
    end: datetime
    only: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None or self.start > self.end:
            raise ValueError("a window needs aware datetimes with start <= end")


class Provider(ABC):
    id: ClassVar[str]
    display_name: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    metrics: ClassVar[frozenset[str]]

    @property
    def unavailable_reason(self) -> str | None:
        """Why this provider cannot be used here (missing credentials), or None when it can."""
        return None

    @property
    def available(self) -> bool:
        return self.unavailable_reason is None

    def needs_refresh(self, tokens: dict[str, Any], now: datetime | None = None) -> bool:
        expires_at = tokens.get("expires_at")
        if not self.capabilities.refresh_tokens or expires_at is None:
            return False
        return datetime.fromisoformat(expires_at) - REFRESH_MARGIN <= (now or datetime.now(UTC))

    async def refresh(self, tokens: dict[str, Any]) -> dict[str, Any]:
        """New tokens; only called when ``capabilities.refresh_tokens``."""
        raise NotImplementedError(f"{self.id} does not refresh tokens")

    @abstractmethod
    def fetch(
        self, tokens: dict[str, Any], window: Window, settings: dict[str, Any]
    ) -> AsyncIterator[Reading | Session]:
        """Readings recorded inside ``window``, in canonical units, and the window's sleep and
        workout sessions, each with its real start and end: never a reading of value 0.
        Providers file sessions by day, so one may start or end up to a day before the window.
        Raises TransientSyncError or PermanentSyncError."""
