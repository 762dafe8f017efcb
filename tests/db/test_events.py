"""The event outbox leaves pending only what an enabled endpoint of the tenant subscribes to."""

from __future__ import annotations

import asyncpg

from db import events, tenants, webhooks
from db.sealing import Keyring


async def _pending(conn: asyncpg.Connection, tenant_id: int) -> list[str]:
    rows = await conn.fetch(
        "SELECT type FROM events WHERE tenant_id = $1 AND dispatched_at IS NULL ORDER BY id", tenant_id
    )
    return [r["type"] for r in rows]


async def test_only_events_an_enabled_endpoint_of_the_tenant_subscribes_to_wait_for_the_dispatcher(
    conn: asyncpg.Connection,
) -> None:
    keyring = Keyring.parse(Keyring.new_entry("k1"))
    clinic, other = [await tenants.ensure_tenant(conn, slug, slug.title()) for slug in ("clinic", "other")]
    await webhooks.create(conn, keyring, tenant_id=other, url="https://other.example/hook",
                          events=[events.ALERT_CREATED], description="another tenant's")  # fmt: skip
    gone, _ = await webhooks.create(conn, keyring, tenant_id=clinic, url="https://old.example/hook",
                                    events=[events.SCORE_UPDATED], description="disabled")  # fmt: skip
    await webhooks.disable(conn, gone.id, "test")

    # Nobody of the clinic's listens yet: every event is born dispatched, and nothing is fanned out.
    await events.publish(conn, clinic, events.SYNC_COMPLETED, {"sync_run_id": 1})
    await events.publish_many(conn, [(clinic, events.ALERT_CREATED, {"alert_id": 1}),
                                     (clinic, events.SCORE_UPDATED, {"user_id": 1})])  # fmt: skip
    assert await _pending(conn, clinic) == []
    assert await conn.fetchval("SELECT count(*) FROM events WHERE tenant_id = $1", clinic) == 3
    assert not await events.any_pending(conn)

    listened = [events.SYNC_COMPLETED, events.ALERT_CREATED]
    endpoint, _ = await webhooks.create(conn, keyring, tenant_id=clinic, url="https://clinic.example/hook",
                                        events=listened, description="live")  # fmt: skip
    await events.publish(conn, clinic, events.SYNC_COMPLETED, {"sync_run_id": 2})
    await events.publish_many(conn, [(clinic, events.ALERT_CREATED, {"alert_id": 2}),
                                     (clinic, events.SCORE_UPDATED, {"user_id": 2})])  # fmt: skip
    assert await _pending(conn, clinic) == [events.SYNC_COMPLETED, events.ALERT_CREATED]
    assert await events.any_pending(conn)

    delivered = await webhooks.dispatch(conn)
    assert len(delivered) == 2
    targets = await conn.fetch("SELECT endpoint_id FROM webhook_deliveries WHERE id = ANY($1::bigint[])", delivered)
    assert [r["endpoint_id"] for r in targets] == [endpoint.id, endpoint.id]
    assert await _pending(conn, clinic) == []
    assert not await events.any_pending(conn)
