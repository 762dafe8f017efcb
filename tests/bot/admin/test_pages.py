"""Each console page with seeded rows, and its actions: requeue a dead letter or a failed run,
replay a webhook delivery."""

from __future__ import annotations

import asyncio
import html
import time
import uuid
from pathlib import Path

import asyncpg
import dramatiq
from aiohttp.test_utils import TestClient

from bot.admin import broker as inspect
from db import connections, tenants
from db.sealing import Keyring
from pipeline import runtime, triggers
from pipeline.providers.simulator import issue_tokens
from tests.bot.admin.conftest import PASSWORD, login, seed_tenant, session_csrf
from tests.helpers import eventually


async def text_of(client: TestClient, path: str) -> str:
    response = await client.get(path)
    assert response.status == 200, f"{path}: {response.status}"
    assert response.headers["Content-Type"].startswith("text/html")
    assert "script" not in response.headers["Content-Security-Policy"]
    return html.unescape(await response.text())


async def dead_sync_letter(pool: asyncpg.Pool, rt: runtime.Runtime, slug: str) -> tuple[int, inspect.DeadLetter]:
    """A real dead letter: a sync whose tokens were sealed under a key the worker lacks fails
    permanently (SealError is in the actor's ``throws``), so Dramatiq dead-letters it at once."""
    stranger = Keyring.parse(Keyring.new_entry("stranger"))
    async with pool.acquire() as conn:
        tenant_id = await tenants.ensure_tenant(conn, slug, slug.title())
        user_id = await tenants.ensure_user(conn, tenant_id, "p1", "Pat One")
        connection_id = await connections.upsert(
            conn, stranger, user_id=user_id, provider="simulator", tokens=issue_tokens()
        )
    run_id = await triggers.request_sync(pool, connection_id, "manual")

    async def dead() -> inspect.DeadLetter | None:
        letters = await asyncio.to_thread(inspect.dead_letters, rt.broker, "sync", 500)
        return next((d for d in letters if d.args == (run_id,)), None)

    return run_id, await eventually(dead, what="the sync message to be dead-lettered")


def dead_like_the_broker(rt: runtime.Runtime, queue: str, run_id: int) -> str:
    """A dead letter written as dispatch.lua's ``nack`` writes one, after Retries ran out: with
    its retry count and the traceback of the last failure in the message options."""
    trace = (
        "Traceback (most recent call last):\n"
        '  File "/app/pipeline/actors.py", line 80, in analyse\n'
        "    await analyse_run(pool, run_id)\n"
        f"ValueError: run {run_id} has no readings\n"
    )
    message = dramatiq.Message(
        queue_name=queue, actor_name="analyse", args=(run_id,), kwargs={}, options={"retries": 4, "traceback": trace}
    )
    redis_id = str(uuid.uuid4())
    message = message.copy(options={"redis_message_id": redis_id})
    xq = f"{rt.broker.namespace}:{queue}.XQ"
    rt.broker.client.zadd(xq, {redis_id: int(time.time() * 1000)})
    rt.broker.client.hset(f"{xq}.msgs", redis_id, message.encode())
    return redis_id


async def test_every_page_renders_the_seeded_rows_for_a_password_session(
    console: TestClient, pool: asyncpg.Pool, pipeline_runtime: runtime.Runtime, worker: dramatiq.Worker, tmp_path: Path
) -> None:
    seeded = await seed_tenant(pool, pipeline_runtime.keyring, "admin-pages", tmp_path)
    run_id, _ = await dead_sync_letter(pool, pipeline_runtime, "admin-pages-dead")
    await login(console, password=PASSWORD)

    queues = await text_of(console, "/admin/queues?queue=sync")
    for column in ("Ready", "In progress", "Delayed", "Dead letters"):
        assert column in queues
    for queue in ("sync", "analytics", "notifications", "webhooks", "reports"):
        assert f">{queue}</a>" in queues
    assert f"({run_id},)" in queues and "failed permanently" in queues
    assert "is sealed with key 'stranger'" in queues  # the run's own error, beside its letter

    redis_id = await asyncio.to_thread(dead_like_the_broker, pipeline_runtime, "analytics", 424242)
    letters = await text_of(console, "/admin/queues?queue=analytics")
    assert "(424242,)" in letters and "ValueError: run 424242 has no readings" in letters
    assert "Traceback (last lines)" in letters and "in analyse" in letters
    token = await session_csrf(console, "/admin/queues")
    data = {"csrf": token, "queue": "analytics", "id": redis_id, "action": "delete"}
    assert "Deleted analyse(424242,)" in html.unescape(
        await (await console.post("/admin/queues/dead-letters", data=data)).text()
    )

    runs = await text_of(console, "/admin/sync-runs?status=failed&tenant=admin-pages")
    assert f"#{seeded.failed_run_id}" in runs and "ProviderDown: admin-pages upstream answered 503" in runs
    assert f'href="/admin/connections?id={seeded.connection_id}"' in runs
    assert "3000 ms" in runs  # the duration, from started/finished

    notes = await text_of(console, "/admin/deliveries?tenant=admin-pages")
    assert f"#{seeded.log_id}" in notes and "High resting heart rate for admin-pages" in notes
    assert "transient" in notes and "87 ms" in notes and "peer said 500" in notes

    hooks = await text_of(console, "/admin/deliveries?kind=webhooks&tenant=admin-pages")
    assert f"#{seeded.delivery_id}" in hooks and "gone" in hooks and "42 ms" in hooks and "410" in hooks
    assert "hooks.admin-pages.example/cb" in hooks and "sekrit" not in hooks

    conns = await text_of(console, f"/admin/connections?id={seeded.connection_id}")
    assert f"#{seeded.connection_id}" in conns and "simulator" in conns
    assert "sim-at-" not in conns and "sim-rt-" not in conns  # tokens never leave the seal
    assert "no tokens" not in conns and "missing key" not in conns  # the expiry was read
    dead = await text_of(console, "/admin/connections?tenant=admin-pages-dead")
    assert "sealed under a missing key" in dead

    jobs = await text_of(console, "/admin/scheduler")
    for job in ("reconcile", "sync-sweep", "daily-sync", "cgm-sync", "aggregate", "cleanup", "reports"):
        assert f"<td>{job}</td>" in jobs


async def test_an_inactive_connection_shows_why(
    console: TestClient, pool: asyncpg.Pool, pipeline_runtime: runtime.Runtime, tmp_path: Path
) -> None:
    seeded = await seed_tenant(pool, pipeline_runtime.keyring, "admin-inactive", tmp_path)
    async with pool.acquire() as conn:
        await connections.set_status(conn, seeded.connection_id, "revoked", "the user revoked access at the provider")
    await login(console, password=PASSWORD)
    page = await text_of(console, "/admin/connections?status=not-active&tenant=admin-inactive")
    assert "the user revoked access at the provider" in page and "revoked" in page


async def test_requeueing_a_dead_letter_runs_it_again_and_delete_drops_it(
    console: TestClient, pool: asyncpg.Pool, pipeline_runtime: runtime.Runtime, worker: dramatiq.Worker
) -> None:
    run_id, letter = await dead_sync_letter(pool, pipeline_runtime, "admin-requeue")
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT status FROM sync_runs WHERE id = $1", run_id) == "failed"
    await login(console, password=PASSWORD)
    token = await session_csrf(console, "/admin/queues")
    response = await console.post(
        "/admin/queues/dead-letters", data={"csrf": token, "queue": "sync", "id": letter.redis_id, "action": "requeue"}
    )
    assert response.status == 200 and f"Requeued sync({run_id},)" in html.unescape(await response.text())

    # The worker ran it again (the run claimed afresh), and it died again under a new Redis id.
    async def died_again() -> inspect.DeadLetter | None:
        letters = await asyncio.to_thread(inspect.dead_letters, pipeline_runtime.broker, "sync", 500)
        return next((d for d in letters if d.args == (run_id,) and d.redis_id != letter.redis_id), None)

    again = await eventually(died_again, what="the requeued message to run and die again")
    assert again.message_id == letter.message_id and again.retries == 0
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT attempts FROM sync_runs WHERE id = $1", run_id) == 1
        assert await conn.fetchval(
            "SELECT count(*) FROM audit_events WHERE action = 'admin.dead_letter.requeue'"
            " AND details->>'message_id' = $1",
            letter.message_id,
        )

    response = await console.post(
        "/admin/queues/dead-letters", data={"csrf": token, "queue": "sync", "id": again.redis_id, "action": "delete"}
    )
    assert response.status == 200 and "Deleted" in html.unescape(await response.text())
    assert inspect.peek(pipeline_runtime.broker, "sync", again.redis_id) is None
    response = await console.post(
        "/admin/queues/dead-letters", data={"csrf": token, "queue": "sync", "id": again.redis_id, "action": "delete"}
    )
    assert "gone already" in await response.text()


async def test_a_failed_sync_run_is_requeued_from_its_page(
    console: TestClient, pool: asyncpg.Pool, pipeline_runtime: runtime.Runtime, tmp_path: Path
) -> None:
    seeded = await seed_tenant(pool, pipeline_runtime.keyring, "admin-runs", tmp_path)
    await login(console, api_key=seeded.admin_key)
    token = await session_csrf(console)
    response = await console.post("/admin/sync-runs/requeue", data={"csrf": token, "run_id": str(seeded.failed_run_id)})
    assert f"Requeued sync run {seeded.failed_run_id}." in await response.text()
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT status, attempts FROM sync_runs WHERE id = $1", seeded.failed_run_id)
        assert row["status"] != "failed" or row["attempts"] <= 1  # pending again (a worker may have run it)
        actor = await conn.fetchval(
            "SELECT actor FROM audit_events WHERE action = 'admin.sync_run.requeue' AND subject_id = $1",
            seeded.failed_run_id,
        )
        assert actor.startswith("admin:api_key:")
    again = await console.post("/admin/sync-runs/requeue", data={"csrf": token, "run_id": str(seeded.failed_run_id)})
    assert "nothing to requeue" in await again.text() or "Requeued" in await again.text()


async def test_a_webhook_delivery_is_replayed_with_its_webhook_id(
    console: TestClient, pool: asyncpg.Pool, pipeline_runtime: runtime.Runtime, tmp_path: Path
) -> None:
    seeded = await seed_tenant(pool, pipeline_runtime.keyring, "admin-replay", tmp_path)
    async with pool.acquire() as conn:
        msg_id = await conn.fetchval("SELECT msg_id FROM webhook_deliveries WHERE id = $1", seeded.delivery_id)
    await login(console, password=PASSWORD)
    token = await session_csrf(console)
    response = await console.post(
        "/admin/deliveries/replay", data={"csrf": token, "delivery_id": str(seeded.delivery_id)}
    )
    assert f"Replaying webhook delivery {seeded.delivery_id}." in await response.text()
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT msg_id, retries FROM webhook_deliveries WHERE id = $1", seeded.delivery_id)
        assert row["msg_id"] == msg_id
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM audit_events WHERE action = 'admin.webhook_delivery.replay' AND subject_id = $1",
                seeded.delivery_id,
            )
            == 1
        )
