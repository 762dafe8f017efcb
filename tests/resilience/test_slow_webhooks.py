"""Drill 6: integrator endpoints that answer in 9 s, or never; a fast one beside them.

The webhook worker runs as the Procfile has it (10 threads on the webhooks queue); the
reconciler dispatches events every 0.2 s.  The 10 s request timeout must cut off the silent
endpoint, the slow one's 9 s answer must still count, every attempt must be logged with its
error class, and the fast endpoint's deliveries must keep their speed.

The first drill hangs one delivery per slow endpoint and measures the fast endpoint meanwhile.
The second sends a burst of events to all three: each delivery holds a worker thread for the
whole POST, so slow deliveries beyond the thread count queue the fast endpoint's behind them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from db import events
from pipeline.webhooks.deliver import BUSY_DELAY
from tests.fakes.receiver import Receiver
from tests.helpers import eventually
from tests.resilience.checks import counted
from tests.resilience.conftest import Drill

SLOW_S = 9.0
SILENT_S = 3600.0  # longer than any drill: the handler is cancelled when the receiver stops
TIMEOUT_S = 10.0  # WebhookSettings.timeout
PROMPT_S = 2.0  # a fast endpoint's delivery, from the event's commit to its arrival
THREADS = 10  # the Procfile's webhooks worker


@pytest.fixture
def webhook_drill(drill: Drill) -> Iterator[Drill]:
    # One retry, long after the drill: each delivery's first attempt is all there is to see.
    drill.env["WEBHOOK_RETRY_SCHEDULE"] = "60"
    # The lease must outlast the 10 s timeout, or the reconciler would take a delivery still in
    # flight for a lost one and send it again (the drills' default lease is 10 s).
    drill.env["DELIVERY_LEASE_SECONDS"] = "30"
    drill.start_worker("webhooks", threads=THREADS, queues=["webhooks"])
    drill.start_reconciler(every=0.2)
    yield drill


async def publish(drill: Drill, event_type: str, data: dict[str, Any]) -> float:
    """Commit one event of the drill's tenant; returns when (monotonic)."""
    tenant_id = await drill.tenant()
    async with drill.pool.acquire() as conn:
        await events.publish(conn, tenant_id, event_type, data)
    return time.monotonic()


async def attempts(pool: asyncpg.Pool, endpoint_id: int) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT a.attempt, a.http_status, a.latency_ms, a.error_class, a.detail, d.status, d.last_error"
        " FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id"
        " WHERE d.endpoint_id = $1 ORDER BY a.id",
        endpoint_id,
    )


def ids(receiver: Receiver, path: str) -> set[str]:
    """The distinct webhook-ids the endpoint received."""
    return {r.headers["webhook-id"] for r in receiver.received(path)}


async def arrival(receiver: Receiver, path: str, count: int, timeout: float) -> float:
    """When the endpoint's ``count``-th request arrived (monotonic)."""

    async def arrived() -> float | None:
        found = receiver.received(path)
        return found[count - 1].at if len(found) >= count else None

    at: float = await eventually(arrived, timeout=timeout, what=f"request {count} at {path}")
    return at


@pytest.mark.timeout(60)
async def test_a_slow_and_a_silent_endpoint_time_out_are_logged_and_leave_a_fast_one_its_speed(
    webhook_drill: Drill, receiver: Receiver
) -> None:
    drill = webhook_drill
    fast_id, fast = await drill.webhook_endpoint(receiver, [events.SYNC_COMPLETED, events.SCORE_UPDATED])
    slow_id, slow = await drill.webhook_endpoint(receiver, [events.SYNC_COMPLETED])
    silent_id, silent = await drill.webhook_endpoint(receiver, [events.SYNC_COMPLETED])
    receiver.fail(slow, count=5, delay=SLOW_S)
    receiver.fail(silent, count=5, delay=SILENT_S)

    # Before anything hangs: the fast endpoint's speed on an idle worker.
    published = await publish(drill, events.SCORE_UPDATED, {"n": 0})
    idle = await arrival(receiver, fast, 1, timeout=15) - published

    hung_at = await publish(drill, events.SYNC_COMPLETED, {"n": 1})
    await arrival(receiver, slow, 1, timeout=10)
    await arrival(receiver, silent, 1, timeout=10)
    # While both hang: five more events for the fast endpoint alone, each once the last arrived.
    busy: list[float] = []
    for n in range(5):
        published = await publish(drill, events.SCORE_UPDATED, {"n": 2 + n})
        busy.append(await arrival(receiver, fast, 3 + n, timeout=15) - published)
    measured_while_hung = time.monotonic() - hung_at

    fast_sent = 7  # the idle one, the sync.completed event, and the five

    async def all_logged() -> tuple[list[asyncpg.Record], ...] | None:
        found = tuple([await attempts(drill.pool, e) for e in (fast_id, slow_id, silent_id)])
        return found if len(found[0]) == fast_sent and found[1] and found[2] else None

    fast_log, slow_log, silent_log = await eventually(all_logged, timeout=20, what="every attempt logged")

    counted(
        "slow webhooks",
        fast_idle_s=round(idle, 2),
        fast_while_hung_s=[round(s, 2) for s in busy],
        measured_while_hung_s=round(measured_while_hung, 1),
        slow_attempt=[(r["http_status"], r["latency_ms"], r["error_class"]) for r in slow_log],
        silent_attempt=[(r["http_status"], r["latency_ms"], r["error_class"], r["detail"]) for r in silent_log],
        fast_attempts=len(fast_log),
        lost=fast_sent - len(ids(receiver, fast)) + 1 - len(ids(receiver, slow)),
    )
    assert measured_while_hung < SLOW_S, "the fast endpoint was measured after the slow one answered"
    assert max(busy) < PROMPT_S, f"the fast endpoint slowed down while the others hung: {busy} (idle {idle:.2f} s)"
    assert len(receiver.received(fast)) == len(ids(receiver, fast)) == fast_sent
    # One request each: nothing took the hanging deliveries for lost and sent them again.
    assert len(receiver.received(slow)) == len(receiver.received(silent)) == 1
    assert [(r["http_status"], r["error_class"]) for r in fast_log] == [(200, None)] * fast_sent
    assert receiver.problems[fast] == receiver.problems[slow] == []
    # The slow endpoint's 9 s answer is inside the timeout: delivered, and logged with its latency.
    [slow_attempt] = slow_log
    assert (slow_attempt["http_status"], slow_attempt["error_class"]) == (200, None)
    assert slow_attempt["status"] == "succeeded"
    assert SLOW_S * 1000 <= slow_attempt["latency_ms"] < TIMEOUT_S * 1000
    # The silent one is cut off at 10 s: a transient error, to be retried on the schedule.
    [silent_attempt] = silent_log
    assert (silent_attempt["http_status"], silent_attempt["error_class"]) == (None, "transient")
    assert silent_attempt["detail"] == f"webhook: no answer from 127.0.0.1 within {TIMEOUT_S:g} s"
    assert TIMEOUT_S * 1000 <= silent_attempt["latency_ms"] < (TIMEOUT_S + 3) * 1000
    assert (silent_attempt["status"], silent_attempt["last_error"]) == ("pending", silent_attempt["detail"])


BURST = 8  # events to all three endpoints: 16 slow deliveries for 10 threads


@pytest.mark.timeout(60)
async def test_a_burst_to_slow_endpoints_does_not_queue_a_fast_endpoint_behind_them(
    webhook_drill: Drill, receiver: Receiver
) -> None:
    drill = webhook_drill
    _, fast = await drill.webhook_endpoint(receiver, [events.SCORE_UPDATED, events.SYNC_COMPLETED])
    _, slow = await drill.webhook_endpoint(receiver, [events.SCORE_UPDATED])
    _, silent = await drill.webhook_endpoint(receiver, [events.SCORE_UPDATED])
    receiver.fail(slow, count=BURST, delay=SLOW_S)
    receiver.fail(silent, count=BURST, delay=SILENT_S)
    # An event for the fast endpoint alone first: its speed on an idle worker.
    published = await publish(drill, events.SYNC_COMPLETED, {"n": 0})
    idle = await arrival(receiver, fast, 1, timeout=15) - published

    tenant_id = await drill.tenant()
    async with drill.pool.acquire() as conn, conn.transaction():
        for n in range(BURST):
            await events.publish(conn, tenant_id, events.SCORE_UPDATED, {"n": 1 + n})
    published = time.monotonic()
    await arrival(receiver, fast, 1 + BURST, timeout=45)
    latencies = [r.at - published for r in receiver.received(fast)[1:]]

    counted(
        "webhook burst beside slow endpoints",
        events=BURST,
        worker_threads=THREADS,
        fast_idle_s=round(idle, 2),
        fast_arrived_after_s=[round(s, 1) for s in latencies],
        slow_received=len(receiver.received(slow)),
        silent_received=len(receiver.received(silent)),
        lost=1 + BURST - len(ids(receiver, fast)),
    )
    # Arriving together, as on an idle worker: none of them waited for a slow delivery to end.
    # The fast endpoint's own burst has its in-flight cap too: on a loaded machine its fourth
    # delivery may find three still open and wait one BUSY_DELAY, still far below SLOW_S.
    allowed = PROMPT_S + BUSY_DELAY.total_seconds()
    assert allowed < SLOW_S
    spread = max(latencies) - min(latencies)
    assert spread < allowed and max(latencies) < idle + allowed, (
        f"the fast endpoint's deliveries waited behind the slow ones' for worker threads: {latencies}"
    )
