"""Limits of the integrator API, read once at boot: rate, body size, batch size, time."""

from __future__ import annotations

from dataclasses import dataclass

from db import env as envlib


@dataclass(frozen=True, slots=True)
class ApiSettings:
    # Requests per API key (or per signing tenant) per minute; 0 turns the limit off.
    rate_limit_per_minute: int = 600
    max_body_bytes: int = 1024**2
    max_readings: int = 5000
    request_timeout_seconds: int = 30

    @classmethod
    def from_env(cls, env: envlib.Env) -> ApiSettings:
        """API_RATE_LIMIT_PER_MINUTE, API_MAX_BODY_BYTES, API_MAX_READINGS, API_REQUEST_TIMEOUT_SECONDS.
        Raises SettingError naming the variable."""
        return cls(
            envlib.integer(env, "API_RATE_LIMIT_PER_MINUTE", 600, maximum=1_000_000),
            envlib.integer(env, "API_MAX_BODY_BYTES", 1024**2, minimum=1024, maximum=64 * 1024**2),
            envlib.integer(env, "API_MAX_READINGS", 5000, minimum=1, maximum=100_000),
            envlib.integer(env, "API_REQUEST_TIMEOUT_SECONDS", 30, minimum=1, maximum=600),
        )
