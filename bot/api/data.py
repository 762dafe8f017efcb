"""A user's health data: readings (raw or daily, by page), scores, correlations, alerts.

Pages are keyset pages: ``next_cursor`` is an opaque base64 of the last row's sort key, so a
page is one index range however deep the client reads, and rows written meanwhile are neither
skipped nor repeated.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from bot.api.auth import require
from bot.api.errors import invalid
from bot.api.openapi import Param, Routes, Schema, listing
from bot.api.params import (
    CURSOR,
    FROM,
    LIMIT,
    TO,
    bigint,
    cursor,
    day,
    encode_cursor,
    iso,
    limit,
    page_schema,
    path_id,
    string,
    text,
    timestamp,
    when,
)
from bot.api.users import owned
from bot.state import pool
from pipeline.vocabulary import UNITS

RESOLUTIONS = ("raw", "day")
ALERT_STATUSES = ("open", "acknowledged", "snoozed", "resolved")
MAX_SCORE_RANGE = timedelta(days=400)

_NUMBER = {"type": "number"}
READING: Schema = {
    "type": "object",
    "required": ["metric", "recorded_at", "value", "unit", "provider"],
    "properties": {
        "metric": {"type": "string"},
        "recorded_at": {"type": "string", "format": "date-time"},
        "value": _NUMBER,
        "unit": {"type": "string"},
        "provider": {"type": "string"},
    },
}
DAY: Schema = {
    "type": "object",
    "required": ["metric", "day", "avg", "min", "max", "count", "avg_7d", "avg_30d"],
    "properties": {
        "metric": {"type": "string"},
        "day": {"type": "string", "format": "date"},
        "avg": _NUMBER, "min": _NUMBER, "max": _NUMBER, "count": {"type": "integer"},
        "avg_7d": _NUMBER, "avg_30d": _NUMBER,
    },
}  # fmt: skip
SCORE: Schema = {
    "type": "object",
    "required": ["day", "domain", "score", "contributors", "computed_at"],
    "properties": {
        "day": {"type": "string", "format": "date"},
        "domain": {"type": "string"},
        "score": _NUMBER,
        "contributors": {"type": "object"},
        "computed_at": {"type": "string", "format": "date-time"},
    },
}
CORRELATION: Schema = {
    "type": "object",
    "required": ["metric_a", "metric_b", "lag_days", "n", "spearman", "pearson", "p_value", "q_value", "ci_low",
                 "ci_high", "description", "period_end"],
    "properties": {
        "metric_a": {"type": "string"}, "metric_b": {"type": "string"}, "lag_days": {"type": "integer"},
        "n": {"type": "integer"}, "spearman": _NUMBER, "pearson": _NUMBER, "p_value": _NUMBER, "q_value": _NUMBER,
        "ci_low": _NUMBER, "ci_high": _NUMBER, "description": {"type": "string"},
        "period_end": {"type": "string", "format": "date"},
    },
}  # fmt: skip
ALERT: Schema = {
    "type": "object",
    "required": ["id", "category", "kind", "severity", "metric", "title", "body", "status", "created_at"],
    "properties": {
        "id": {"type": "integer"},
        "category": {"type": "string"},
        "kind": {"type": "string"},
        "severity": {"enum": ["info", "warning", "critical"]},
        "metric": {"type": ["string", "null"]},
        "title": {"type": "string"},
        "body": {"type": "string"},
        "observed_value": {"type": ["number", "null"]},
        "threshold": {"type": ["number", "null"]},
        "recorded_at": {"type": ["string", "null"], "format": "date-time"},
        "status": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
    },
}


def _metric(request: web.Request) -> str | None:
    metric = text(request, "metric")
    if metric is not None and metric not in UNITS:
        raise invalid(f"unknown metric {metric!r}; see docs/api.md for the vocabulary", {"parameter": "metric"})
    return metric


def _range(request: web.Request) -> tuple[datetime | None, datetime | None]:
    start, end = when(request, "from"), when(request, "to")
    if start is not None and end is not None and end < start:
        raise invalid("to must not be before from", {"parameter": "to"})
    return start, end


async def list_metrics(request: web.Request) -> web.Response:
    key = require(request, "read")
    user_id = path_id(request, "user_id", "user")
    metric, (start, end) = _metric(request), _range(request)
    resolution = text(request, "resolution", RESOLUTIONS) or "raw"
    size = limit(request)
    async with pool(request).acquire() as conn:
        await owned(conn, key.tenant_id, user_id)
        if resolution == "raw":
            after = cursor(request, timestamp, string, string)
            rows = await conn.fetch(
                "SELECT metric, recorded_at, value, unit, provider FROM metrics WHERE user_id = $1"
                " AND ($2::text IS NULL OR metric = $2) AND ($3::timestamptz IS NULL OR recorded_at >= $3)"
                " AND ($4::timestamptz IS NULL OR recorded_at < $4)"
                " AND ($5::timestamptz IS NULL OR (recorded_at, metric, provider) > ($5, $6, $7))"
                " ORDER BY recorded_at, metric, provider LIMIT $8",
                user_id, metric, start, end, *(after or (None, None, None)), size + 1,
            )  # fmt: skip
            data = [dict(r) | {"recorded_at": r["recorded_at"].isoformat()} for r in rows[:size]]
            last = [data[-1]["recorded_at"], data[-1]["metric"], data[-1]["provider"]] if data else []
        else:
            after = cursor(request, day, string)
            rows = await conn.fetch(
                "SELECT metric, day, avg, min, max, count, avg_7d, avg_30d FROM daily_stats WHERE user_id = $1"
                " AND ($2::text IS NULL OR metric = $2) AND ($3::date IS NULL OR day >= $3)"
                " AND ($4::date IS NULL OR day < $4) AND ($5::date IS NULL OR (day, metric) > ($5, $6))"
                " ORDER BY day, metric LIMIT $7",
                user_id, metric, start and start.date(), end and end.date(), *(after or (None, None)), size + 1,
            )  # fmt: skip
            data = [dict(r) | {"day": r["day"].isoformat()} for r in rows[:size]]
            last = [data[-1]["day"], data[-1]["metric"]] if data else []
    more = len(rows) > size
    return web.json_response({"data": data, "next_cursor": encode_cursor(last) if more else None})


async def list_scores(request: web.Request) -> web.Response:
    """Without a range, the latest day of each domain; with one, every score in it (≤ 400 days)."""
    key = require(request, "read")
    user_id = path_id(request, "user_id", "user")
    start, end = _range(request)
    async with pool(request).acquire() as conn:
        await owned(conn, key.tenant_id, user_id)
        if start is None and end is None:
            rows = await conn.fetch(
                "SELECT DISTINCT ON (domain) day, domain, score, contributors, computed_at FROM health_scores"
                " WHERE user_id = $1 ORDER BY domain, day DESC",
                user_id,
            )
        else:
            end = end or datetime.now(UTC)
            start = start or end - MAX_SCORE_RANGE
            if end - start > MAX_SCORE_RANGE:
                raise invalid("from and to may be at most 400 days apart", {"parameter": "from"})
            rows = await conn.fetch(
                "SELECT day, domain, score, contributors, computed_at FROM health_scores"
                " WHERE user_id = $1 AND day >= $2 AND day < $3 ORDER BY day, domain",
                user_id,
                start.date(),
                end.date(),
            )
    data = [dict(r) | {"day": r["day"].isoformat(), "computed_at": r["computed_at"].isoformat()} for r in rows]
    return web.json_response({"data": data})


async def list_correlations(request: web.Request) -> web.Response:
    key = require(request, "read")
    user_id = path_id(request, "user_id", "user")
    async with pool(request).acquire() as conn:
        await owned(conn, key.tenant_id, user_id)
        rows = await conn.fetch(
            "SELECT metric_a, metric_b, lag_days, n, spearman, pearson, p_value, q_value, ci_low, ci_high,"
            " description, period_end FROM correlations WHERE user_id = $1"
            " ORDER BY q_value, metric_a, metric_b, lag_days",
            user_id,
        )
    return web.json_response({"data": [dict(r) | {"period_end": r["period_end"].isoformat()} for r in rows]})


async def list_alerts(request: web.Request) -> web.Response:
    key = require(request, "read")
    user_id = path_id(request, "user_id", "user")
    status = text(request, "status", ALERT_STATUSES)
    size = limit(request)
    after = cursor(request, bigint)
    async with pool(request).acquire() as conn:
        await owned(conn, key.tenant_id, user_id)
        rows = await conn.fetch(
            "SELECT id, category, kind, severity, metric, title, body, observed_value, threshold, recorded_at, status,"
            " created_at FROM alerts WHERE user_id = $1 AND ($2::text IS NULL OR status = $2)"
            " AND ($3::bigint IS NULL OR id < $3) ORDER BY id DESC LIMIT $4",
            user_id,
            status,
            after[0] if after else None,
            size + 1,
        )
    data: list[dict[str, Any]] = [
        dict(r) | {"recorded_at": iso(r["recorded_at"]), "created_at": r["created_at"].isoformat()} for r in rows[:size]
    ]
    more = len(rows) > size
    return web.json_response({"data": data, "next_cursor": encode_cursor([data[-1]["id"]]) if more else None})


def add_routes(routes: Routes) -> None:
    base = "/v1/users/{user_id}"
    metric = Param("metric", {"enum": sorted(UNITS)}, "One metric of the canonical vocabulary.")
    resolution = Param("resolution", {"enum": list(RESOLUTIONS)}, "raw readings (default) or daily stats.")
    status = Param("status", {"enum": list(ALERT_STATUSES)}, "Only alerts in this state.")
    routes.add(
        "GET",
        base + "/metrics",
        list_metrics,
        scope="read",
        tag="data",
        summary="Readings, raw or per local day, by page",
        query=(metric, FROM, TO, resolution, LIMIT, CURSOR),
        responses={200: page_schema({"oneOf": [READING, DAY]})},
    )
    routes.add(
        "GET",
        base + "/scores",
        list_scores,
        scope="read",
        tag="data",
        summary="Latest score per domain, or every score between from and to",
        query=(FROM, TO),
        responses={200: listing(SCORE)},
    )
    routes.add(
        "GET",
        base + "/correlations",
        list_correlations,
        scope="read",
        tag="data",
        summary="Significant correlations of the last 90 days, each with a plain-words description",
        responses={200: listing(CORRELATION)},
    )
    routes.add(
        "GET",
        base + "/alerts",
        list_alerts,
        scope="read",
        tag="data",
        summary="The user's alerts, newest first, by page",
        query=(status, LIMIT, CURSOR),
        responses={200: page_schema(ALERT)},
    )
