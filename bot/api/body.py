"""Reading request bodies: JSON objects only, with a clear 4xx for anything else."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from bot.api.errors import ApiError


async def json_body(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object.  415 when it is not JSON, 400 when it does not parse or is
    not an object; an oversized body is refused by the app's client_max_size (413)."""
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    try:
        body = json.loads(await request.read())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "malformed_json", "the body must be a JSON object")
    return body
