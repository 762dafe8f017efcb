"""Bearer API keys for ``/v1``: the middleware finds the key, each route states its scope.

The key's tenant scopes every query: a handler reads ``api_key(request).tenant_id`` and
checks each id in the path against it, so another tenant's id is a 404, exactly like an id
that does not exist.

A verified key is remembered in the process for ``KEY_TTL`` seconds, by the SHA-256 of the
key as presented: an integrator's steady stream then costs no query per request.  A key
revoked through this process stops working at once (the revocation clears the cache); one
revoked through another web process stops within ``KEY_TTL`` seconds; an expiry is checked on
every request.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from aiohttp import web

from bot.api.errors import ApiError
from bot.state import POOL
from db import api_keys
from db.api_keys import ApiKey

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

API_KEY: web.RequestKey[ApiKey] = web.RequestKey("api_key", ApiKey)
# Paths under /v1 that need no key.
PUBLIC = frozenset({"/v1/openapi.json"})
# Paths that take a Standard Webhooks signature instead of a key: a request there with a
# ``webhook-signature`` header and no Authorization header goes to the handler, which verifies it.
SIGNED = frozenset({"/v1/ingest"})
KEY_TTL = 5.0
MAX_CACHED = 10_000  # keys; past it the cache starts over rather than grow


class KeyCache:
    """Keys verified in the last ``KEY_TTL`` seconds, by the digest of the presented key."""

    def __init__(self, ttl: float = KEY_TTL) -> None:
        self.ttl = ttl
        self._found: dict[bytes, tuple[float, ApiKey]] = {}

    def get(self, digest: bytes) -> ApiKey | None:
        hit = self._found.get(digest)
        if hit is None:
            return None
        until, key = hit
        if until < time.monotonic() or (key.expires_at is not None and key.expires_at <= datetime.now(UTC)):
            del self._found[digest]
            return None
        return key

    def put(self, digest: bytes, key: ApiKey) -> None:
        if len(self._found) >= MAX_CACHED:
            self._found.clear()
        self._found[digest] = (time.monotonic() + self.ttl, key)

    def clear(self) -> None:
        self._found.clear()


KEYS: web.AppKey[KeyCache] = web.AppKey("api_keys_verified", KeyCache)


def unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": 'Bearer realm="carebeacon"'})


@web.middleware
async def bearer_keys(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/v1/") or request.path in PUBLIC:
        return await handler(request)
    if request.path in SIGNED and "webhook-signature" in request.headers and "Authorization" not in request.headers:
        return await handler(request)
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise unauthorized("send an API key as `Authorization: Bearer <key>`")
    presented = presented.strip()
    cache = request.app[KEYS]
    digest = hashlib.sha256(presented.encode()).digest()
    key = cache.get(digest)
    if key is None:
        async with request.app[POOL].acquire() as conn:
            key = await api_keys.authenticate(conn, presented)
        if key is None:
            raise unauthorized("the API key is unknown, expired or revoked")
        cache.put(digest, key)
    request[API_KEY] = key
    return await handler(request)


def require(request: web.Request, scope: str) -> ApiKey:
    """The request's key, when it carries ``scope`` (admin implies write implies read); else 403
    (401 on a signed request, which carries no key)."""
    key: ApiKey | None = request.get(API_KEY)
    if key is None:
        raise unauthorized("send an API key as `Authorization: Bearer <key>`")
    if not key.allows(scope):
        raise ApiError(403, "forbidden", f"this API key lacks the {scope!r} scope")
    return key
