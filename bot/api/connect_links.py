"""One-time connect links: a URL to hand a user, which opens the provider's sign-in for them.

``POST /v1/users/{user_id}/connect-links`` with ``{"provider": "oura"}`` returns a
``/connect/start`` URL bound to that user and provider, usable once within 15 minutes (the
chat front end makes the same links with ``db.connect_links.create``).  For a provider connected
by uploading a file (``apple_health``) the URL opens its upload page instead.  Unlike the
``authorize_url`` of ``POST …/connections``, it starts the flow from our own origin, so the
state and PKCE verifier never leave the server before the user opens it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web
from yarl import URL

from bot.api.auth import require
from bot.api.body import json_body, string_field, unknown_fields
from bot.api.context import public_url
from bot.api.errors import ApiError, invalid
from bot.api.openapi import Routes, Schema
from bot.api.params import path_id
from bot.api.users import owned
from bot.state import pool
from bot.web.apple_health import UPLOAD_PAGES
from db import connect_links
from pipeline.providers import PROVIDERS
from pipeline.providers.junction import Junction

NEW_LINK: Schema = {
    "type": "object",
    "required": ["provider"],
    "properties": {
        "provider": {
            "type": "string",
            "description": "An OAuth provider, such as oura, or apple_health (an upload page)",
        }
    },
}
LINK: Schema = {
    "type": "object",
    "required": ["url", "expires_at"],
    "properties": {"url": {"type": "string"}, "expires_at": {"type": "string", "format": "date-time"}},
}


def oauth_providers() -> list[str]:
    """The providers a link can connect: those with an authorize URL, and Junction's, whose link
    page leads on to Junction Link."""
    return sorted(p for p, pr in PROVIDERS.items() if hasattr(pr, "authorize_url") or isinstance(pr, Junction))


async def create_link(request: web.Request) -> web.Response:
    key = require(request, "write")
    user_id = path_id(request, "user_id", "user")
    body = await json_body(request)
    unknown_fields(body, {"provider"})
    provider_id = string_field(body, "provider", required=True) or ""
    async with pool(request).acquire() as conn:
        await owned(conn, key.tenant_id, user_id)  # another tenant's user: 404 whatever the body
        known = sorted([*oauth_providers(), *UPLOAD_PAGES])
        if provider_id not in known:
            raise invalid(f"provider must be one of {', '.join(known)}", {"field": "provider"})
        if not PROVIDERS[provider_id].available:
            raise ApiError(409, "provider_unavailable", f"{provider_id} is not configured on this server")
        token = await connect_links.create(conn, user_id, provider_id)
    url = URL(f"{public_url(request)}{UPLOAD_PAGES.get(provider_id, '/connect/start')}").with_query(token=token)
    # From our clock, not the row's: a link checked against the database lives a hair longer.
    expires_at = datetime.now(UTC) + connect_links.LIFETIME
    return web.json_response({"url": str(url), "expires_at": expires_at.isoformat()}, status=201)


def add_routes(routes: Routes) -> None:
    routes.add(
        "POST",
        "/v1/users/{user_id}/connect-links",
        create_link,
        scope="write",
        tag="connections",
        summary="A one-time link (15 minutes) that opens the provider's sign-in for the user",
        body=NEW_LINK,
        responses={201: LINK},
        errors=(409,),
    )
