"""The Sync runs page: runs newest first, filtered by status, provider and tenant; requeue a failed one.

Filters are added to the SQL only when given (values stay bind parameters), so each query
shape gets a plan that uses its index instead of a generic ``$1 IS NULL OR …`` plan.
"""

from __future__ import annotations

from aiohttp import web

from bot.admin.auth import actor
from bot.admin.keys import SESSION
from bot.admin.render import PAGE_SIZE, before, keyset, link, page
from bot.state import POOL
from db import audit
from pipeline.triggers import requeue_failed

STATUSES = ("pending", "running", "completed", "failed", "skipped")
# Open and failed runs are few (partial indexes keep them); counts stop here all the same.
COUNT_CAP = 1000

_SELECT = (
    "SELECT r.id, r.status, r.trigger, r.connection_id, c.provider, u.tenant_id, t.slug AS tenant,"
    " r.rows_received, r.rows_written, r.rows_unchanged, r.rows_invalid, r.attempts, r.error,"
    " r.created_at, r.finished_at, coalesce(r.duration_ms::float8,"
    "  extract(epoch FROM r.finished_at - r.started_at) * 1000) AS duration_ms"
    " FROM sync_runs r JOIN connections c ON c.id = r.connection_id JOIN users u ON u.id = c.user_id"
    " JOIN tenants t ON t.id = u.tenant_id"
)


def _filters(request: web.Request) -> dict[str, str]:
    status = request.query.get("status", "")
    return {
        "status": status if status in STATUSES else "",
        "provider": request.query.get("provider", "")[:40],
        "tenant": request.query.get("tenant", "")[:63] if request[SESSION].deployment_wide else "",
    }


async def show(request: web.Request) -> web.StreamResponse:
    session, chosen = request[SESSION], _filters(request)
    where: list[str] = []
    args: list[object] = []

    def add(clause: str, value: object) -> None:
        args.append(value)
        where.append(clause.replace("$?", f"${len(args)}"))

    if session.tenant_id is not None:
        add("u.tenant_id = $?", session.tenant_id)
    if chosen["tenant"]:
        add("t.slug = $?", chosen["tenant"])
    if chosen["provider"]:
        add("c.provider = $?", chosen["provider"])
    scope = list(where), list(args)
    if chosen["status"]:
        add("r.status = $?", chosen["status"])
    start = before(request)
    if start is not None:
        add("r.id < $?", start)
    sql = _SELECT + (" WHERE " + " AND ".join(where) if where else "") + f" ORDER BY r.id DESC LIMIT {PAGE_SIZE + 1}"
    async with request.config_dict[POOL].acquire() as conn:
        found = keyset(await conn.fetch(sql, *args))
        counts = {}
        for status in ("pending", "running", "failed"):
            clauses = [*scope[0], f"r.status = ${len(scope[1]) + 1}"]
            counts[status] = await conn.fetchval(
                "SELECT count(*) FROM (SELECT 1 FROM sync_runs r JOIN connections c ON c.id = r.connection_id"
                " JOIN users u ON u.id = c.user_id JOIN tenants t ON t.id = u.tenant_id"
                f" WHERE {' AND '.join(clauses)} LIMIT {COUNT_CAP + 1}) capped",
                *scope[1],
                status,
            )
        providers = await conn.fetch("SELECT DISTINCT provider FROM connections ORDER BY provider")
    more = link("/admin/sync-runs", **chosen, before=found.next_before) if found.next_before else None
    return page(
        request,
        "sync_runs.html",
        runs=found.rows,
        more=more,
        chosen=chosen,
        statuses=STATUSES,
        providers=[r["provider"] for r in providers],
        counts=counts,
        cap=COUNT_CAP,
    )


async def requeue(request: web.Request) -> web.StreamResponse:
    """POST ``run_id``: a failed run of the session's scope goes back to the queue."""
    form = await request.post()
    raw = str(form.get("run_id", ""))
    run_id = int(raw) if raw.isdigit() and len(raw) < 19 else 0
    session = request[SESSION]
    pool = request.config_dict[POOL]
    async with pool.acquire() as conn:
        tenant_id = await conn.fetchval(
            "SELECT u.tenant_id FROM sync_runs r JOIN connections c ON c.id = r.connection_id"
            " JOIN users u ON u.id = c.user_id WHERE r.id = $1",
            run_id,
        )
    if tenant_id is None or (session.tenant_id is not None and tenant_id != session.tenant_id):
        raise web.HTTPSeeOther(link("/admin/sync-runs", notice=f"No sync run {run_id}."))
    requeued = await requeue_failed(pool, [run_id])
    if requeued:
        async with pool.acquire() as conn:
            await audit.record(
                conn,
                tenant_id=tenant_id,
                actor=actor(request),
                action="admin.sync_run.requeue",
                subject_type="sync_run",
                subject_id=run_id,
            )
    notice = f"Requeued sync run {run_id}." if requeued else f"Sync run {run_id} is not failed; nothing to requeue."
    raise web.HTTPSeeOther(link("/admin/sync-runs", status="failed", notice=notice))
