"""Wearable providers, one module each, resolved by id."""

from __future__ import annotations

__all__ = ["PROVIDERS", "Capabilities", "Provider", "Window", "get_provider"]

from pipeline.errors import PermanentSyncError
from pipeline.providers.base import Capabilities, Provider, Window
from pipeline.providers.simulator import Simulator

PROVIDERS: dict[str, Provider] = {provider.id: provider for provider in (Simulator(),)}


def get_provider(provider_id: str) -> Provider:
    try:
        return PROVIDERS[provider_id]
    except KeyError:
        raise PermanentSyncError(f"unknown provider {provider_id!r}") from None
