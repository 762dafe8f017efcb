"""Drill 2: Redis emptied and killed mid-burst, then started again, empty, on the same port.

A burst of syncs fans out into analyses, alert notifications and integrator webhooks.  Mid-burst
the drill's own redis-server (never the suite's shared one) is flushed and SIGKILLed: every
queued, delayed and unacked message is gone, and the worker's sends fail until it comes back.
Postgres holds every run, alert, event and delivery, so once the reconciler runs, all of it
completes; the drill counts what never did, and that must be 0.
"""

from __future__ import annotations

import time

import pytest

from db import events
from tests.fakes.receiver import Receiver
from tests.helpers import eventually
from tests.resilience.checks import assert_delivered_once_each, compare_stored, counted, settled
from tests.resilience.conftest import TACHYCARDIA, Drill, reconciled
from tests.resilience.peers import PrivateRedis

QUEUES = ("sync", "analytics", "notifications", "webhooks")
SUBSCRIBED = [events.SYNC_COMPLETED, events.ALERT_CREATED]


def queued_messages(drill: Drill) -> dict[str, int]:
    """Messages each queue holds in Redis: waiting, delayed, or taken by a worker and unacked."""
    with drill.redis.pipeline(transaction=True) as tx:
        for queue in QUEUES:
            tx.hlen(f"dramatiq:{queue}.msgs")
            tx.hlen(f"dramatiq:{queue}.DQ.msgs")
        found = tx.execute()
    return {queue: found[2 * i] + found[2 * i + 1] for i, queue in enumerate(QUEUES)}


@pytest.mark.timeout(60)
async def test_a_redis_killed_and_restarted_mid_burst_loses_no_run_alert_or_webhook(
    drill: Drill, receiver: Receiver
) -> None:
    broker = PrivateRedis(drill.workdir).start()
    try:
        drill.use_redis(broker.url)
        _, path = await drill.webhook_endpoint(receiver, SUBSCRIBED)
        users = await drill.patients(20, {"pace_ms": 40, "anomalies": TACHYCARDIA})
        # The Procfile's layout in small: syncs on a worker of their own, so analyses, alerts and
        # webhooks flow while syncs are still queued (one worker would take the older messages,
        # every sync, first).
        workers = [
            drill.start_worker("sync-worker", threads=2, queues=["sync"]),
            drill.start_worker("worker", threads=4, queues=QUEUES[1:]),
        ]
        run_ids = await drill.request_syncs([p.connection_id for p in users])

        async def mid_burst() -> bool:
            return bool(receiver.received(path) and queued_messages(drill)["sync"] >= 4)

        await eventually(mid_burst, timeout=30, what="a burst part-way through, webhooks already going out")
        lost_messages = queued_messages(drill)
        drill.redis.flushall()  # the drill's own server: nobody else's keys are in it
        broker.kill()
        killed_at = time.monotonic()
        in_flight = await drill.pool.fetchval("SELECT array_agg(id) FROM sync_runs WHERE status = 'running'") or []

        # Down until both workers lost their consumers and every sync in flight at the kill has
        # finished with no broker to send its analysis to.  A worker may have acked its last
        # sync between the flush and the kill, so none need be in flight.
        async def outage_felt() -> bool:
            lost_broker = all("Consumer encountered a connection error" in w.output() for w in workers)
            still = await drill.pool.fetchval(
                "SELECT count(*) FROM sync_runs WHERE id = ANY($1) AND status = 'running'", in_flight
            )
            return lost_broker and still == 0

        await eventually(outage_felt, timeout=20, what="the workers to feel Redis gone")
        broker.start()
        down_for = time.monotonic() - killed_at
        reconciler = drill.start_reconciler()

        final = await settled(drill, runs=len(users), min_alerts=len(users), timeout=40)

        async def webhooks_done() -> bool:
            row = await drill.pool.fetchrow(
                "SELECT (SELECT count(*) FROM events WHERE type = ANY($1) AND dispatched_at IS NULL) AS undispatched,"
                " (SELECT count(*) FROM webhook_deliveries WHERE status <> 'succeeded') AS open",
                SUBSCRIBED,
            )
            return row["undispatched"] == row["open"] == 0

        await eventually(webhooks_done, timeout=20, what="every event dispatched and every webhook delivered")
    finally:
        broker.stop()

    assert lost_messages["sync"] >= 1, f"the kill found no queued sync to lose: {lost_messages}"
    runs = await drill.pool.fetch("SELECT id, status, attempts FROM sync_runs ORDER BY id")
    assert [r["id"] for r in runs] == sorted(run_ids)
    assert [r["id"] for r in runs if r["status"] != "completed"] == []
    assert [r["id"] for r in runs if r["attempts"] != 1] == [], "a run was claimed twice"
    compared = await compare_stored(drill, users)
    assert compared.wrong == {}
    await assert_delivered_once_each(drill, users)

    # Every subscribed event went to the endpoint exactly once, signed so that it verifies.
    subscribed = await drill.pool.fetchval("SELECT count(*) FROM events WHERE type = ANY($1)", SUBSCRIBED)
    deliveries = await drill.pool.fetch("SELECT msg_id, attempts FROM webhook_deliveries")
    received = [r.headers["webhook-id"] for r in receiver.received(path)]
    assert receiver.problems[path] == []
    assert len(deliveries) == subscribed
    assert sorted(received) == sorted(d["msg_id"] for d in deliveries), "a webhook was lost or sent twice"
    assert reconciled(reconciler)["syncs"] >= 1

    lost = (
        len(users) - final.runs_done
        + final.alerts - final.alerts_routed
        + len({d["msg_id"] for d in deliveries} - set(received))
    )  # fmt: skip
    assert lost == 0
    counted(
        "redis killed mid-burst",
        messages_lost_with_redis=sum(lost_messages.values()),
        redis_down_s=f"{down_for:.1f}",
        syncs_in_flight_at_kill=len(in_flight),
        reconciled=reconciled(reconciler),
        readings_expected=compared.expected,
        readings_stored=compared.stored,
        alerts=final.alerts,
        deliveries=sum(1 for _ in drill.alert_file.read_text().splitlines()),
        webhooks_expected=subscribed,
        webhooks_received=len(received),
        lost=lost,
    )
