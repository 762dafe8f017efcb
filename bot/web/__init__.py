"""The browser pages (connecting a wearable) and the providers' push webhooks.

Plain HTML and JSON outside ``/v1``: no API key, each route checks what it needs itself (a
one-time link, an OAuth state, a provider's signature).
"""

from __future__ import annotations

__all__ = ["WebSettings", "setup"]

import os

from aiohttp import web

from bot.web import apple_health, oauth, provider_hooks
from bot.web.provider_hooks import WEB_SETTINGS
from bot.web.settings import WebSettings


def setup(app: web.Application, settings: WebSettings | None = None) -> None:
    """Add the pages and webhook routes to ``app``, after ``bot.api.setup`` (they read its
    keyring and public URL).  Tests may replace ``app[WEB_SETTINGS]`` before the app starts."""
    # make_app runs once, at startup, and its callers do not pass these yet: so they are read
    # here, once, like the settings the CLI reads (SettingError names the bad variable).
    app[WEB_SETTINGS] = settings or WebSettings.from_env(os.environ)
    oauth.add_routes(app.router)
    provider_hooks.add_routes(app.router)
    apple_health.add_routes(app.router)
