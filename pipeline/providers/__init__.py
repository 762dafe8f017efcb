"""Wearable providers, one module each, resolved by id.

``PROVIDERS`` starts out unconfigured (the simulator, and Oura without credentials, which
reports itself unavailable); ``runtime.start(env)`` calls ``configure(env)``, so a worker reads
OURA_* once, at boot, and a bad value stops it there, naming the variable.
"""

from __future__ import annotations

__all__ = [
    "PROVIDERS",
    "Capabilities",
    "Provider",
    "Window",
    "build_providers",
    "configure",
    "get_provider",
]

import os

from db.env import Env
from pipeline.errors import PermanentSyncError
from pipeline.providers.apple_health import AppleHealth
from pipeline.providers.base import Capabilities, Provider, Window
from pipeline.providers.dexcom import Dexcom
from pipeline.providers.junction import Junction
from pipeline.providers.libre import Libre
from pipeline.providers.oura import Oura
from pipeline.providers.simulator import Simulator
from pipeline.providers.whoop import Whoop
from pipeline.providers.withings import Withings


def build_providers(env: Env = os.environ) -> dict[str, Provider]:
    """One instance per provider, configured from ``env``.  Raises SettingError."""
    return {
        provider.id: provider
        for provider in (
            Simulator(),
            Oura.from_env(env),
            Whoop.from_env(env),
            Dexcom.from_env(env),
            Withings.from_env(env),
            AppleHealth.from_env(env),
            Junction.from_env(env),
            Libre.from_env(env),
        )
    }


# Built from an empty mapping: importing this module must not read, or fail on, the environment.
PROVIDERS: dict[str, Provider] = build_providers({})


def configure(env: Env) -> None:
    """Rebuild the built-in providers from ``env``, in place: holders of ``PROVIDERS`` see the
    change, and providers registered by hand (tests) stay.  Raises SettingError."""
    PROVIDERS.update(build_providers(env))


def get_provider(provider_id: str) -> Provider:
    try:
        return PROVIDERS[provider_id]
    except KeyError:
        raise PermanentSyncError(f"unknown provider {provider_id!r}") from None
