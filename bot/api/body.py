"""Reading request bodies: JSON objects only, with a clear 4xx for anything else."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from bot.api.errors import ApiError, invalid


async def json_body(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object.  415 when it is not JSON, 400 when it does not parse or is
    not an object; an oversized body is refused by the app's client_max_size (413)."""
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    try:
        body = json.loads(await request.read())
    # ValueError also covers an integer of over 4,300 digits; RecursionError, deep nesting.
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "malformed_json", "the body must be a JSON object")
    bad = _unstorable(body, "")
    if bad is not None:
        # Checked once here for every route: Postgres refuses such text with an error.
        raise invalid("text must not contain NUL characters or unpaired surrogates", {"field": bad or "(body)"})
    return body


def _unstorable(value: Any, path: str) -> str | None:
    """The path of the first string (key or value) Postgres cannot store, or None."""
    if isinstance(value, str):
        return None if storable(value) else path
    if isinstance(value, dict):
        for key, item in value.items():
            inner = f"{path}.{key}" if path else str(key)
            if not storable(key):
                return path or "(key)"
            found = _unstorable(item, inner)
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _unstorable(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def storable(value: str) -> bool:
    """Whether Postgres can store ``value`` as text: no NUL, no lone surrogate (JSON allows both)."""
    if "\x00" in value:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def string_field(body: dict[str, Any], name: str, *, required: bool, max_length: int = 200) -> str | None:
    """``body[name]`` as a non-blank string of at most ``max_length`` characters; None when it
    is absent and not required.  422 naming the field otherwise."""
    if name not in body and not required:
        return None
    value = body.get(name)
    if not isinstance(value, str) or not value.strip() or len(value) > max_length or not storable(value):
        raise invalid(f"{name} must be a non-blank string of at most {max_length} characters", {"field": name})
    return value


def unknown_fields(body: dict[str, Any], allowed: set[str]) -> None:
    """422 for a field the operation does not take: a typo should not be silently ignored."""
    extra = sorted(set(body) - allowed)
    if extra:
        raise invalid(f"unknown field {extra[0]!r}; expected some of {', '.join(sorted(allowed))}", {"field": extra[0]})
