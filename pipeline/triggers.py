"""Starting work: the row first, then the message.

If the message is lost (Redis flushed, broker down at send time), the row is still pending
and the reconciler re-enqueues it, so a trigger never silently disappears.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import dramatiq
import redis
from dramatiq.errors import BrokerError

from db import sync_runs
from pipeline import actors
from pipeline.providers import PROVIDERS

log = logging.getLogger(__name__)


def enqueue(actor: dramatiq.Actor[..., Any], *args: int | list[int], delay: timedelta = timedelta(0)) -> bool:
    """Send a message; False (logged) when the broker is unreachable and the reconciler must do it."""
    try:
        if delay > timedelta(0):
            actor.send_with_options(args=args, delay=int(delay.total_seconds() * 1000))
        else:
            actor.send(*args)
    # Dramatiq's Redis broker lets redis-py's own errors through (a refused connection is a
    # redis.ConnectionError, no builtin ConnectionError): the row waits for the reconciler.
    except (BrokerError, redis.RedisError, OSError, ConnectionError) as exc:
        log.warning("could not enqueue %s%s (%s); the reconciler will retry", actor.actor_name, args, exc)
        return False
    return True


async def send(actor: dramatiq.Actor[..., Any], *args: int | list[int]) -> bool:
    """``enqueue`` from the event loop: on a worker thread, since the broker's Redis client
    blocks for its round trip and the loop has other requests to serve meanwhile."""
    return await asyncio.to_thread(enqueue, actor, *args)


class Analyses:
    """Runs to analyse, sent together: one ``analyse_many`` message per ``every`` seconds
    for all the runs recorded meanwhile (a single one goes as ``analyse``).  At hundreds of
    ingest batches or syncs a second that is a few messages a second instead of one a run, and
    the analytics worker reads the batch in one transaction.  A run still buffered when the
    process dies is sent by the reconciler (its row is committed before it is added here)."""

    def __init__(
        self,
        every: float = 0.05,
        one: dramatiq.Actor[[int], Any] | None = None,
        many: dramatiq.Actor[[list[int]], Any] | None = None,
    ) -> None:
        self.every = every
        self.one = one or actors.analyse
        self.many = many or actors.analyse_many
        self._runs: list[int] = []
        self._task: asyncio.Task[None] | None = None

    def add(self, run_id: int) -> None:
        self._runs.append(run_id)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._send_soon())

    async def _send_soon(self) -> None:
        while self._runs:  # those added while a send was under way too
            await asyncio.sleep(self.every)
            await self.flush()

    async def flush(self) -> None:
        runs, self._runs = self._runs, []
        for first in range(0, len(runs), actors.ANALYSE_BATCH):
            chunk = runs[first : first + actors.ANALYSE_BATCH]
            if len(chunk) == 1:
                await send(self.one, chunk[0])
            else:
                await send(self.many, chunk)

    async def close(self) -> None:
        """Send what is buffered (at shutdown): within ``every`` seconds."""
        if self._task is not None:
            await self._task
        await self.flush()


# A worker's completed syncs, per event loop (as its pools are) and pair of actors.
_soon: dict[tuple[asyncio.AbstractEventLoop, str], Analyses] = {}


def analyse_soon(
    run_id: int,
    one: dramatiq.Actor[[int], Any] | None = None,
    many: dramatiq.Actor[[list[int]], Any] | None = None,
) -> None:
    """Have the run analysed with the others this loop completes within 50 ms (``Analyses``):
    a message per run cost the sync worker an enqueue and the analytics worker a message that,
    after a burst, mostly found its run taken by another message's batch."""
    key = (asyncio.get_running_loop(), (one or actors.analyse).actor_name)
    if key not in _soon:
        _soon[key] = Analyses(one=one, many=many)
    _soon[key].add(run_id)


async def request_sync(pool: asyncpg.Pool, connection_id: int, trigger: str) -> int:
    """Record a pending sync run for the connection and enqueue it; returns the run id."""
    async with pool.acquire() as conn:
        run_id = await sync_runs.create(conn, connection_id, trigger)
    await send(actors.sync, run_id)
    return run_id


async def request_push_sync(
    pool: asyncpg.Pool, connection_id: int, waiting: int | None, scope: sync_runs.Scope
) -> int | None:
    """A ``webhook`` run of the connection reading ``scope``, enqueued; returns its id.  When
    the run ``waiting`` is still pending it is widened to ``scope`` instead (None returned):
    a burst of pushes makes one run, and none of them is dropped."""
    async with pool.acquire() as conn:
        if waiting is not None and await sync_runs.widen(conn, waiting, scope):
            return None
        run_id = await sync_runs.create(conn, connection_id, "webhook", scope)
    await send(actors.sync, run_id)
    return run_id


async def sweep(
    pool: asyncpg.Pool,
    trigger: str,
    synced_before: datetime,
    *,
    providers: Sequence[str] | None = None,
    jitter: timedelta = timedelta(0),
) -> list[int]:
    """Create and enqueue a run for every active connection (of ``providers``) that is due.

    With ``jitter``, each message is delayed by its connection's fixed offset in [0, jitter),
    so ten thousand connections do not all hit their providers in the same second.  Providers
    with nothing to pull (an uploaded export) are never swept: each of their runs is asked for.
    """
    skip = [p.id for p in PROVIDERS.values() if not p.capabilities.rest_pull]
    async with pool.acquire() as conn:
        due = await sync_runs.create_due(conn, trigger, synced_before, providers, jitter, skip)
    for run in due:
        enqueue(actors.sync, run.id, delay=run.delay)
    if due:
        log.info("%s sweep: %d sync run(s) enqueued", trigger, len(due))
    return [run.id for run in due]


async def requeue_failed(pool: asyncpg.Pool, run_ids: list[int] | None) -> list[int]:
    """Hand dead-lettered runs back to the queue (all of them when ``run_ids`` is None)."""
    async with pool.acquire() as conn:
        requeued = await sync_runs.requeue(conn, run_ids)
    for run_id in requeued:
        enqueue(actors.sync, run_id)
    if requeued:
        log.info("requeued %d failed sync run(s)", len(requeued))
    return requeued
