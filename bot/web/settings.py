"""Settings of the browser pages and provider webhooks, read once at startup."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from db import env as envlib


@dataclass(frozen=True, slots=True)
class WebSettings:
    """``oura_verification_token``: what we gave Oura as ``verification_token`` when subscribing
    (its GET handshake must present it).  ``withings_notify_token``: the secret ``token`` we put
    in the Withings notify callback URL.  Either unset: that provider's pushes are refused (401).
    ``push_tolerance``: how old a signed push may be."""

    oura_verification_token: str | None = field(default=None, repr=False)
    withings_notify_token: str | None = field(default=None, repr=False)
    push_tolerance: timedelta = timedelta(minutes=5)
    # The largest Apple Health export.zip the upload page takes (APPLE_HEALTH_MAX_UPLOAD_MB).
    apple_health_max_upload_bytes: int = 1024 * 1024**2

    @classmethod
    def from_env(cls, env: envlib.Env) -> WebSettings:
        """OURA_WEBHOOK_VERIFICATION_TOKEN and WITHINGS_NOTIFY_TOKEN (or _FILE),
        PROVIDER_WEBHOOK_TOLERANCE_SECONDS (default 300), APPLE_HEALTH_MAX_UPLOAD_MB (default 1024).
        Raises SettingError."""
        seconds = envlib.integer(env, "PROVIDER_WEBHOOK_TOLERANCE_SECONDS", 300, minimum=10, maximum=3600)
        upload_mb = envlib.integer(env, "APPLE_HEALTH_MAX_UPLOAD_MB", 1024, minimum=1, maximum=64 * 1024)
        return cls(
            envlib.secret(env, "OURA_WEBHOOK_VERIFICATION_TOKEN"),
            envlib.secret(env, "WITHINGS_NOTIFY_TOKEN"),
            timedelta(seconds=seconds),
            upload_mb * 1024**2,
        )
