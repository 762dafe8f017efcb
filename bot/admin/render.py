"""Rendering admin pages: one Jinja2 environment (autoescaped), keyset pages and cheap counts.

No page counts an unbounded table: a list shows ``LIMIT n + 1`` rows (the extra one says there is
a next page), and table sizes come from the planner's estimate (``pg_class.reltuples``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import asyncpg
import jinja2
from aiohttp import web

from bot.admin.keys import SESSION
from db.admin_sessions import AdminSession

PAGE_SIZE = 50
NAV = (
    ("queues", "/admin/queues", "Queues"),
    ("sync_runs", "/admin/sync-runs", "Sync runs"),
    ("deliveries", "/admin/deliveries", "Deliveries"),
    ("connections", "/admin/connections", "Connections"),
    ("scheduler", "/admin/scheduler", "Scheduler"),
)


def _when(value: datetime | None) -> str:
    return "—" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.0f} ms" if value < 10_000 else f"{value / 1000:.1f} s"


TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("bot.admin", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
TEMPLATES.filters["when"] = _when
TEMPLATES.filters["ms"] = _ms


def page(request: web.Request, template: str, *, status: int = 200, **context: Any) -> web.Response:
    """The template rendered with the session (its CSRF token, its scope) and the nav."""
    session: AdminSession | None = request.get(SESSION)
    notice = request.query.get("notice", "")
    html = TEMPLATES.get_template(template).render(
        session=session, nav=NAV, path=request.path, notice=notice[:200], **context
    )
    return web.Response(text=html, status=status, content_type="text/html", headers=_HEADERS)


# No scripts anywhere in the console: a strict CSP costs nothing and blunts any injection.
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self';"
    " frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def denied(request: web.Request, message: str, status: int = 403) -> web.Response:
    return page(request, "denied.html", status=status, message=message)


@dataclass(frozen=True, slots=True)
class Keyset:
    """One page of a list ordered by id descending: ``rows`` and the ``before`` id of the next page."""

    rows: Sequence[asyncpg.Record]
    next_before: int | None


def keyset(rows: Sequence[asyncpg.Record], size: int = PAGE_SIZE) -> Keyset:
    """Trim the ``size + 1`` rows a query fetched to ``size``; the extra one means "more"."""
    if len(rows) > size:
        return Keyset(rows[:size], int(rows[size - 1]["id"]))
    return Keyset(rows, None)


def before(request: web.Request) -> int | None:
    """The ``before`` id of a keyset page, or None for the first page (bad values too)."""
    raw = request.query.get("before", "")
    return int(raw) if raw.isdigit() and len(raw) < 19 else None


def link(path: str, **params: object) -> str:
    """``path`` with the non-empty ``params`` as its query."""
    kept = {k: v for k, v in params.items() if v not in (None, "")}
    return f"{path}?{urlencode(kept)}" if kept else path


async def estimates(conn: asyncpg.Connection, tables: Sequence[str]) -> dict[str, int]:
    """The planner's row estimates (-1, never analysed, shows as 0): free, unlike count(*)."""
    rows = await conn.fetch(
        "SELECT relname, reltuples::bigint AS n FROM pg_class WHERE relkind IN ('r', 'p')"
        " AND relnamespace = current_schema()::regnamespace AND relname = ANY ($1)",
        list(tables),
    )
    return {r["relname"]: max(0, r["n"]) for r in rows}
