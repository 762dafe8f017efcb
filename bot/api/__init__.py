"""The integrator REST API under ``/v1``: API-key auth, tenant-scoped resources, JSON errors.

Each resource module has ``add_routes(routes: Routes)`` and adds every route through
``Routes.add`` (see ``bot.api.openapi``), which also describes it in ``/v1/openapi.json``.
"""

from __future__ import annotations

__all__ = ["API_KEY", "ApiError", "ApiSettings", "Routes", "require", "setup"]

from collections.abc import Callable

from aiohttp import web

from bot.api import (
    alerts,
    care_teams,
    channels,
    chat_admin,
    connect_links,
    connections,
    data,
    docs,
    ingest,
    keys,
    rules,
    silences,
    sync,
    users,
    webhooks,
)
from bot.api.auth import API_KEY, KEYS, KeyCache, bearer_keys, require
from bot.api.context import API_SETTINGS, BOT_SETTINGS, KEYRING, ROUTES_DECLARED
from bot.api.errors import ApiError
from bot.api.limits import body_size, rate_limit, setup_counter, time_limit
from bot.api.openapi import Routes
from bot.api.settings import ApiSettings
from bot.settings import BotSettings
from db.sealing import Keyring


def setup(app: web.Application, *, settings: BotSettings, limits: ApiSettings, keyring: Keyring) -> None:
    """Add the API's middleware, settings and routes to ``app`` (after its error middleware)."""
    app[BOT_SETTINGS], app[API_SETTINGS], app[KEYRING] = settings, limits, keyring
    app[KEYS] = KeyCache()
    setup_counter(app)
    ingest.setup(app)
    # Size first, so an oversized body is refused before the key lookup; time last, so it
    # bounds the handler alone.
    app.middlewares.extend([body_size, bearer_keys, rate_limit, time_limit])
    routes = Routes(app.router)
    for add_routes in ROUTES:
        add_routes(routes)
    app[ROUTES_DECLARED] = routes
    docs.publish(app, routes, settings.public_url)


# One function per resource module, each adding its routes.
ROUTES: list[Callable[[Routes], None]] = [
    docs.add_routes,
    keys.add_routes,
    users.add_routes,
    connections.add_routes,
    connect_links.add_routes,
    sync.add_routes,
    data.add_routes,
    ingest.add_routes,
    webhooks.add_routes,
    alerts.add_routes,
    channels.add_routes,
    rules.add_routes,
    care_teams.add_routes,
    silences.add_routes,
    chat_admin.add_routes,
]
