"""The integrator REST API under ``/v1``: API-key auth, tenant-scoped resources, JSON errors."""

from __future__ import annotations

__all__ = ["API_KEY", "ApiError", "require", "setup"]

from collections.abc import Callable

from aiohttp import web

from bot.api import keys
from bot.api.auth import API_KEY, bearer_keys, require
from bot.api.errors import ApiError


def setup(app: web.Application) -> None:
    """Add the API's middleware and routes to ``app``."""
    app.middlewares.append(bearer_keys)
    for add_routes in ROUTES:
        add_routes(app.router)


# One function per resource module, each adding its routes.
ROUTES: list[Callable[[web.UrlDispatcher], None]] = [keys.add_routes]
