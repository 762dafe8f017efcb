"""The Deliveries page: notification attempts (the delivery log) and integrator webhook deliveries.

Both lists are keyset pages, newest first, filtered by outcome (and tenant, for a password
session).  A webhook delivery can be replayed: same ``webhook-id``, a fresh retry schedule.
Endpoint URLs show without their query string, where integrators sometimes put a token.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from aiohttp import web

from bot.admin.auth import actor
from bot.admin.keys import SESSION
from bot.admin.render import PAGE_SIZE, before, keyset, link, page
from bot.state import POOL
from db import audit
from pipeline import actors
from pipeline.triggers import enqueue
from pipeline.webhooks import replay as replay_deliveries

KINDS = ("notifications", "webhooks")
NOTIFY_STATUSES = ("sending", "delivered", "failed", "rate_limited", "suppressed", "deferred", "pruned")
WEBHOOK_STATUSES = ("pending", "delivering", "succeeded", "failed")

_NOTIFICATIONS = (
    "SELECT l.id, l.alert_id, a.title, a.severity, l.channel_id, ch.kind AS channel_kind, ch.label AS channel_label,"
    " t.slug AS tenant, l.purpose, l.attempt, l.status, l.error_class, l.http_status, l.latency_ms, l.detail,"
    " l.created_at FROM notification_logs l JOIN notification_channels ch ON ch.id = l.channel_id"
    " JOIN tenants t ON t.id = ch.tenant_id JOIN alerts a ON a.id = l.alert_id"
)
# The latest attempt of each delivery shown: its HTTP status, latency and error class.
_WEBHOOKS = (
    "SELECT d.id, d.endpoint_id, e.url, t.slug AS tenant, ev.type AS event_type, d.status, d.attempts,"
    " d.last_error, d.created_at, d.finished_at, la.http_status, la.latency_ms, la.error_class"
    " FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id"
    " JOIN tenants t ON t.id = e.tenant_id JOIN events ev ON ev.id = d.event_id"
    " LEFT JOIN LATERAL (SELECT http_status, latency_ms, error_class FROM webhook_attempts"
    "  WHERE delivery_id = d.id ORDER BY attempt DESC LIMIT 1) la ON true"
)


def _bare(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(query="", fragment="", netloc=parts.hostname or ""))


async def show(request: web.Request) -> web.StreamResponse:
    session = request[SESSION]
    kind = request.query.get("kind", "notifications")
    kind = kind if kind in KINDS else "notifications"
    statuses = NOTIFY_STATUSES if kind == "notifications" else WEBHOOK_STATUSES
    status = request.query.get("status", "")
    status = status if status in statuses else ""
    tenant = request.query.get("tenant", "")[:63] if session.deployment_wide else ""
    alias = "l" if kind == "notifications" else "d"
    tenant_of = "ch.tenant_id" if kind == "notifications" else "e.tenant_id"
    where: list[str] = []
    args: list[object] = []
    for clause, value in (
        (f"{tenant_of} = $?", session.tenant_id),
        ("t.slug = $?", tenant or None),
        (f"{alias}.status = $?", status or None),
        (f"{alias}.id < $?", before(request)),
    ):
        if value is not None:
            args.append(value)
            where.append(clause.replace("$?", f"${len(args)}"))
    base = _NOTIFICATIONS if kind == "notifications" else _WEBHOOKS
    sql = base + (" WHERE " + " AND ".join(where) if where else "") + f" ORDER BY {alias}.id DESC LIMIT {PAGE_SIZE + 1}"
    async with request.config_dict[POOL].acquire() as conn:
        found = keyset(await conn.fetch(sql, *args))
    rows = [dict(r) | ({"url": _bare(r["url"])} if kind == "webhooks" else {}) for r in found.rows]
    chosen = {"kind": kind, "status": status, "tenant": tenant}
    more = link("/admin/deliveries", **chosen, before=found.next_before) if found.next_before else None
    return page(request, "deliveries.html", kind=kind, rows=rows, more=more, chosen=chosen, statuses=statuses)


async def replay(request: web.Request) -> web.StreamResponse:
    """POST ``delivery_id``: send a webhook delivery of the session's scope again."""
    form = await request.post()
    raw = str(form.get("delivery_id", ""))
    delivery_id = int(raw) if raw.isdigit() and len(raw) < 19 else 0
    session = request[SESSION]
    pool = request.config_dict[POOL]
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT d.endpoint_id, e.tenant_id FROM webhook_deliveries d"
            " JOIN webhook_endpoints e ON e.id = d.endpoint_id WHERE d.id = $1",
            delivery_id,
        )
    back = link("/admin/deliveries", kind="webhooks", notice=f"No webhook delivery {delivery_id}.")
    if row is None or (session.tenant_id is not None and row["tenant_id"] != session.tenant_id):
        raise web.HTTPSeeOther(back)
    replayed = await replay_deliveries(pool, row["endpoint_id"], [delivery_id])
    for found in replayed:
        enqueue(actors.deliver_webhook, found)
    if replayed:
        async with pool.acquire() as conn:
            await audit.record(
                conn,
                tenant_id=row["tenant_id"],
                actor=actor(request),
                action="admin.webhook_delivery.replay",
                subject_type="webhook_delivery",
                subject_id=delivery_id,
            )
    notice = (
        f"Replaying webhook delivery {delivery_id}."
        if replayed
        else f"Webhook delivery {delivery_id} is mid-attempt; try again shortly."
    )
    raise web.HTTPSeeOther(link("/admin/deliveries", kind="webhooks", notice=notice))
