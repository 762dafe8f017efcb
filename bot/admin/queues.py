"""The Queues page: each queue's depth, in progress, delayed and dead letters; requeue or delete one.

Deployment-wide (a message does not say whose it is), so a tenant-bound session is refused.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from aiohttp import web

from bot.admin import broker as inspect
from bot.admin.auth import actor, deployment_only
from bot.admin.render import link, page
from bot.state import BROKER, POOL
from db import audit, sync_runs

log = logging.getLogger(__name__)


async def show(request: web.Request) -> web.StreamResponse:
    refused = deployment_only(request)
    if refused is not None:
        return refused
    broker = request.config_dict[BROKER]
    found = await asyncio.to_thread(inspect.stats, broker)
    chosen = request.query.get("queue", "")
    if chosen not in {q.name for q in found}:
        chosen = next((q.name for q in found if q.dead), "")
    letters = await asyncio.to_thread(inspect.dead_letters, broker, chosen) if chosen else []
    async with request.config_dict[POOL].acquire() as conn:
        recorded = await row_errors(conn, letters)
    return page(request, "queues.html", queues=found, chosen=chosen, letters=letters, recorded=recorded)


async def row_errors(conn: asyncpg.Connection, letters: list[inspect.DeadLetter]) -> dict[str, str]:
    """The error each letter's row recorded, by Redis id.  A permanent failure (an actor's
    ``throws``) is dead-lettered without a traceback; its row still says what went wrong."""
    wanted = {
        table: [d for d in letters if d.actor == actor and d.args and isinstance(d.args[0], int)]
        for actor, table in _ROWS.items()
    }
    found: dict[str, str] = {}
    for table, dead in wanted.items():
        if not dead:
            continue
        column = "error" if table == "sync_runs" else "last_error"
        rows = await conn.fetch(
            f"SELECT id, {column} AS error FROM {table} WHERE id = ANY ($1) AND {column} IS NOT NULL",
            [d.args[0] for d in dead],
        )
        by_id = {r["id"]: r["error"] for r in rows}
        found |= {d.redis_id: by_id[d.args[0]] for d in dead if d.args[0] in by_id}
    return found


# Actors whose first argument is the id of a row that records its own error.
_ROWS = {"sync": "sync_runs", "deliver_webhook": "webhook_deliveries"}


async def act(request: web.Request) -> web.StreamResponse:
    """POST requeue or delete of one dead letter (``queue``, ``id``, ``action``)."""
    refused = deployment_only(request)
    if refused is not None:
        return refused
    form = await request.post()
    queue, redis_id, action = str(form.get("queue", "")), str(form.get("id", "")), str(form.get("action", ""))
    broker = request.config_dict[BROKER]
    if queue not in inspect.queues(broker) or action not in ("requeue", "delete"):
        raise web.HTTPSeeOther(link("/admin/queues", notice="Unknown queue or action."))
    message = await asyncio.to_thread(inspect.peek, broker, queue, redis_id)
    if message is None:
        raise web.HTTPSeeOther(link("/admin/queues", queue=queue, notice="That dead letter is gone already."))
    async with request.config_dict[POOL].acquire() as conn:
        if action == "requeue" and message.actor_name == "sync" and message.args:
            # The run's row owns its state: a failed run must be pending again, or the actor's
            # claim finds nothing to do.  Row first: should the move below lose a race, the
            # reconciler still finds the pending row and sends it.
            await sync_runs.requeue(conn, [int(message.args[0])])
        done = await asyncio.to_thread(
            inspect.requeue if action == "requeue" else inspect.delete, broker, queue, redis_id
        )
        if done:
            await audit.record(
                conn,
                tenant_id=None,
                actor=actor(request),
                action=f"admin.dead_letter.{action}",
                subject_type="dramatiq_message",
                subject_id=None,
                details={"queue": queue, "actor": message.actor_name, "message_id": message.message_id},
            )
    log.info("admin: dead letter %s on %s %s", message.message_id, queue, f"{action}d" if done else "already gone")
    notice = f"{'Requeued' if action == 'requeue' else 'Deleted'} {message.actor_name}{tuple(message.args)}."
    raise web.HTTPSeeOther(link("/admin/queues", queue=queue, notice=notice if done else "Already gone."))
