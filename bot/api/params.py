"""Path ids, query parameters and cursors: parsed at the edge into typed values or a clear 4xx."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time
from typing import Any

from aiohttp import web

from bot.api.body import storable
from bot.api.errors import invalid, not_found
from bot.api.openapi import BIGINT_MAX, Param, Schema

MAX_LIMIT = 1000

LIMIT = Param("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}, "Items per page (default 100).")
CURSOR = Param("cursor", {"type": "string", "maxLength": 500}, "`next_cursor` of the previous page.")
FROM = Param("from", {"type": "string", "format": "date-time"}, "From this time (or date), inclusive.")
TO = Param("to", {"type": "string", "format": "date-time"}, "Up to this time (or date), exclusive.")


def page_schema(item: Schema) -> Schema:
    return {
        "type": "object",
        "required": ["data", "next_cursor"],
        "properties": {"data": {"type": "array", "items": item}, "next_cursor": {"type": ["string", "null"]}},
    }


def path_id(request: web.Request, name: str, what: str) -> int:
    """The path's ``{name}`` as an id; 404 naming ``what`` when it is not one (it cannot exist)."""
    raw = request.match_info[name]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19 or not 1 <= int(raw) <= BIGINT_MAX:
        raise not_found(what)
    return int(raw)


def text(request: web.Request, name: str, choices: Sequence[str] | None = None) -> str | None:
    value = request.query.get(name)
    if value is None:
        return None
    if not value or len(value) > 200 or not storable(value):
        raise invalid(f"{name} must be a string of 1 to 200 characters", {"parameter": name})
    if choices is not None and value not in choices:
        raise invalid(f"{name} must be one of {', '.join(choices)}", {"parameter": name})
    return value


def limit(request: web.Request, default: int = 100) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 4 or not 1 <= int(raw) <= MAX_LIMIT:
        raise invalid(f"limit must be an integer from 1 to {MAX_LIMIT}", {"parameter": "limit"})
    return int(raw)


def when(request: web.Request, name: str) -> datetime | None:
    """An RFC 3339 time with a zone, or a date (its midnight UTC); 422 otherwise."""
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        if len(raw) == 10:
            return datetime.combine(date.fromisoformat(raw), time(), UTC)
        found = datetime.fromisoformat(raw)
    except ValueError:
        found = None
    if found is None or found.tzinfo is None:
        raise invalid(f"{name} must be a date or a time with a zone (2025-01-31T08:00:00Z)", {"parameter": name})
    return found


def encode_cursor(key: Sequence[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key), separators=(",", ":")).encode()).decode().rstrip("=")


def cursor(request: web.Request, *kinds: Callable[[Any], Any]) -> list[Any] | None:
    """The decoded ``cursor``: one value per kind (each converts a JSON value, raising on a bad
    one); None without a cursor, 422 for one that is not ours."""
    raw = request.query.get("cursor")
    if raw is None:
        return None
    try:
        values = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        if not isinstance(values, list) or len(values) != len(kinds):
            raise ValueError("wrong shape")
        return [kind(value) for kind, value in zip(kinds, values, strict=True)]
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError, OverflowError):
        raise invalid("cursor is not one this API returned", {"parameter": "cursor"}) from None


def bigint(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= BIGINT_MAX:
        raise ValueError("not an id")
    return value


def string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("not a string")
    return value


def timestamp(value: Any) -> datetime:
    found = datetime.fromisoformat(string(value))
    if found.tzinfo is None:
        raise ValueError("naive time")
    return found


def day(value: Any) -> date:
    return date.fromisoformat(string(value))


def iso(value: datetime | date | None) -> str | None:
    return value.isoformat() if value is not None else None
