"""Deliveries through the real worker to a local receiver that checks every signature with the
official library: retries with one webhook-id, Retry-After, 410, auto-disable, rotation, a
lost message, and the simulator's events."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest
import redis

from channels.destinations import DestinationPolicy
from db import events
from pipeline import runtime
from pipeline.providers.simulator import issue_tokens
from pipeline.reconciler import reconcile_webhooks
from pipeline.triggers import request_sync
from pipeline.webhooks import deliver
from pipeline.webhooks.settings import WebhookSettings
from tests.conftest import PIPELINE_REDIS_DB, Servers
from tests.helpers import eventually, make_patient
from tests.webhooks.conftest import attempts, backstop, finished, make_endpoint, send_event
from tests.webhooks.receiver import Receiver

pytestmark = pytest.mark.usefixtures("webhook_env", "worker")
_DAY = timedelta(days=1)
LOCAL = DestinationPolicy(allow_private=True)


async def test_500_500_200_is_one_delivery_with_three_attempts_and_one_webhook_id(
    pool: asyncpg.Pool, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    endpoint, secret = await make_endpoint(pool, "wh-retries", receiver.endpoint("retries"))
    receiver.answer("retries", 500, 500, 200)

    delivery_id = await send_event(pool, endpoint)
    done = await finished(pool, delivery_id)

    got = receiver.got["retries"]
    assert done["status"] == "succeeded" and done["attempts"] == 3
    assert [a["http_status"] for a in await attempts(pool, delivery_id)] == [500, 500, 200]
    assert [a["error_class"] for a in await attempts(pool, delivery_id)] == ["transient", "transient", None]
    assert len(got) == 3 and {g.msg_id for g in got} == {done["msg_id"]}
    assert all(g.verifies(secret) for g in got)
    assert got[0].json()["type"] == "sync.completed" and got[0].json()["data"] == {"sync_run_id": 1}
    assert secret not in caplog.text


async def test_a_retry_after_longer_than_the_schedule_is_honoured(pool: asyncpg.Pool, receiver: Receiver) -> None:
    endpoint, _ = await make_endpoint(pool, "wh-retry-after", receiver.endpoint("retry-after"))
    receiver.answer("retry-after", (503, {"Retry-After": "2"}), 200)

    done = await finished(pool, await send_event(pool, endpoint))

    first, second = receiver.got["retry-after"]
    assert done["status"] == "succeeded"
    assert second.at - first.at >= 1.9  # the schedule alone would wait 0.2 s


async def test_a_410_fails_the_delivery_and_disables_the_endpoint_at_once(
    pool: asyncpg.Pool, receiver: Receiver
) -> None:
    endpoint, _ = await make_endpoint(pool, "wh-gone", receiver.endpoint("gone"))
    receiver.answer("gone", 410)

    done = await finished(pool, await send_event(pool, endpoint))

    row = await pool.fetchrow("SELECT enabled, disabled_reason FROM webhook_endpoints WHERE id = $1", endpoint.id)
    assert done["status"] == "failed" and done["attempts"] == 1
    assert row["enabled"] is False and "410" in row["disabled_reason"]
    assert await _told(pool, endpoint.id)
    # Disabled: a later event makes no delivery for it.
    assert await send_event(pool, endpoint) is None


async def test_the_endpoint_is_disabled_after_n_failed_deliveries_in_a_row_and_its_tenant_is_told(
    pool: asyncpg.Pool, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBHOOK_RETRY_SCHEDULE", "0.1")
    monkeypatch.setenv("WEBHOOK_DISABLE_AFTER_FAILURES", "2")
    endpoint, _ = await make_endpoint(pool, "wh-streak", receiver.endpoint("streak"))
    receiver.always["streak"] = 500

    first = await finished(pool, await send_event(pool, endpoint))
    enabled = await pool.fetchval("SELECT enabled FROM webhook_endpoints WHERE id = $1", endpoint.id)
    second = await finished(pool, await send_event(pool, endpoint))

    row = await pool.fetchrow("SELECT * FROM webhook_endpoints WHERE id = $1", endpoint.id)
    assert first["status"] == second["status"] == "failed" and first["attempts"] == 2
    assert enabled is True
    assert row["enabled"] is False and row["disabled_reason"].startswith("2 deliveries in a row failed")
    assert await _told(pool, endpoint.id)


async def test_during_rotation_both_secrets_sign_and_after_the_grace_period_only_the_new_one(
    pool: asyncpg.Pool, receiver: Receiver
) -> None:
    endpoint, old = await make_endpoint(pool, "wh-rotate", receiver.endpoint("rotate"))
    async with pool.acquire() as conn:
        from db import webhooks as stored

        rotated = await stored.rotate(conn, runtime.current().keyring, endpoint.tenant_id, endpoint.id, grace=_DAY)
    assert rotated is not None
    new = rotated[1]

    await finished(pool, await send_event(pool, endpoint))
    await pool.execute(
        "UPDATE webhook_endpoints SET previous_secret_expires_at = now() - interval '1 second' WHERE id = $1",
        endpoint.id,
    )
    await finished(pool, await send_event(pool, endpoint))

    during, after = receiver.got["rotate"]
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    assert during.verifies(new) and during.verifies(old)
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    assert after.verifies(new) and not after.verifies(old)


async def test_a_delivery_whose_retry_message_redis_lost_is_finished_by_the_reconciler(
    pool: asyncpg.Pool, receiver: Receiver, servers: Servers
) -> None:
    rt = runtime.current()
    endpoint, secret = await make_endpoint(pool, "wh-lost", receiver.endpoint("lost"))
    receiver.answer("lost", 500)
    async with pool.acquire() as conn:
        event_id = await events.publish(conn, endpoint.tenant_id, events.SYNC_COMPLETED, {"sync_run_id": 2})
    from pipeline.webhooks import dispatch

    await dispatch(pool)  # the rows, and no message at all
    delivery_id = await pool.fetchval("SELECT id FROM webhook_deliveries WHERE event_id = $1", event_id)
    # The first attempt, made here as the worker would: it fails and asks for a retry, whose
    # message then vanishes with the webhooks queue (only this queue: other tests share db 1).
    slow = WebhookSettings(schedule=(60.0,), policy=LOCAL)
    first = await deliver(pool, rt.keyring, slow, delivery_id, lease=_DAY)
    assert first.outcome == "retry"
    broker_redis = redis.Redis.from_url(servers.redis(PIPELINE_REDIS_DB))
    for key in broker_redis.scan_iter("dramatiq:webhooks*"):
        broker_redis.delete(key)
    await pool.execute(
        "UPDATE webhook_deliveries SET next_attempt_at = now() - interval '1 hour' WHERE id = $1", delivery_id
    )

    enqueued = await reconcile_webhooks(pool, rt.settings)

    assert delivery_id in enqueued
    done = await finished(pool, delivery_id)
    assert done["status"] == "succeeded" and done["attempts"] == 2
    assert {g.msg_id for g in receiver.got["lost"]} == {done["msg_id"]}
    assert all(g.verifies(secret) for g in receiver.got["lost"])


async def test_a_simulator_sync_delivers_sync_completed_and_alert_created_signed(
    pool: asyncpg.Pool, receiver: Receiver, workdir: Path
) -> None:
    keyring = runtime.current().keyring
    _, _, connection_id, _ = await make_patient(
        pool, keyring, tenant="wh-fever", alert_file=workdir / "alerts.jsonl", tokens=issue_tokens()
    )
    await pool.execute(
        'UPDATE connections SET settings = settings || \'{"scenarios": ["fever"]}\' WHERE id = $1', connection_id
    )
    endpoint, secret = await make_endpoint(
        pool, "wh-fever", receiver.endpoint("fever"), [events.SYNC_COMPLETED, events.ALERT_CREATED]
    )

    await request_sync(pool, connection_id, "manual")

    async def both() -> set[str] | None:
        types = {g.json()["type"] for g in receiver.got["fever"]}
        if {"sync.completed", "alert.created"} <= types:
            return types
        await backstop(pool)
        await asyncio.sleep(1)
        return None

    await eventually(both, 60, "sync.completed and alert.created at the receiver")
    got = receiver.got["fever"]
    assert all(g.verifies(secret) for g in got)
    alert = next(g.json() for g in got if g.json()["type"] == "alert.created")
    assert alert["data"]["metric"] == "body_temperature" and "observed_value" not in alert["data"]
    assert len({g.msg_id for g in got}) == len(got)


async def test_pg_dump_holds_no_signing_secret(pool: asyncpg.Pool, receiver: Receiver) -> None:
    from tests.bot.test_cli import pg_dump

    _, secret = await make_endpoint(pool, "wh-dump", receiver.endpoint("dump"))
    dump = pg_dump(runtime.current().services.database_url)

    assert "CREATE TABLE public.webhook_endpoints" in dump
    assert secret not in dump and secret.removeprefix("whsec_") not in dump


async def _told(pool: asyncpg.Pool, endpoint_id: int) -> bool:
    audited = await pool.fetchval(
        "SELECT count(*) FROM audit_events WHERE action = 'webhook_endpoint_disabled' AND subject_id = $1", endpoint_id
    )
    published = await pool.fetchval(
        "SELECT count(*) FROM events WHERE type = 'webhook.disabled'"
        " AND (payload -> 'data' ->> 'endpoint_id')::bigint = $1",
        endpoint_id,
    )
    return bool(audited == 1 and published == 1)
