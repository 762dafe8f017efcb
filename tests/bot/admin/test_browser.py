"""The console in a real browser (headless Debian Chromium over CDP): log in, open every page,
requeue a dead letter, replay a webhook delivery; screenshots go to tests/artifacts/admin/."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg
import dramatiq
from aiohttp.test_utils import TestServer

from bot.admin import broker as inspect
from pipeline import runtime
from tests.bot.admin.cdp import Browser
from tests.bot.admin.conftest import PASSWORD, console_app, seed_tenant
from tests.bot.admin.test_pages import dead_sync_letter
from tests.helpers import eventually

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "admin"
PAGES = {
    "queues": "/admin/queues",
    "sync-runs": "/admin/sync-runs",
    "deliveries": "/admin/deliveries",
    "webhook-deliveries": "/admin/deliveries?kind=webhooks",
    "connections": "/admin/connections",
    "scheduler": "/admin/scheduler",
}


def click(selector: str) -> str:
    return f"document.querySelector({json.dumps(selector)}).click()"


async def test_an_operator_logs_in_opens_each_page_requeues_a_dead_letter_and_replays_a_webhook(
    pool: asyncpg.Pool, pipeline_runtime: runtime.Runtime, worker: dramatiq.Worker, tmp_path: Path
) -> None:
    seeded = await seed_tenant(pool, pipeline_runtime.keyring, "admin-browser", tmp_path)
    run_id, letter = await dead_sync_letter(pool, pipeline_runtime, "admin-browser-dead")
    async with TestServer(console_app(pool, pipeline_runtime, PASSWORD)) as server, Browser() as page:
        base = str(server.make_url("")).rstrip("/")
        await page.goto(f"{base}/admin/queues")
        assert (await page.url()).endswith("/admin/login")
        await page.screenshot(ARTIFACTS / "login.png")

        await page.fill("#password-login input[name=password]", PASSWORD)
        await page.submit(click("#password-login button"))
        assert (await page.url()).endswith("/admin/queues")

        for name, path in PAGES.items():
            await page.goto(f"{base}{path}")
            text = await page.text()
            assert "whole deployment" in text and "Not allowed" not in text, name
            await page.screenshot(ARTIFACTS / f"{name}.png")

        # Requeue the sync dead letter from the queue's list.
        await page.goto(f"{base}/admin/queues?queue=sync")
        form = f"input[name=id][value='{letter.redis_id}']"
        await page.submit(
            f"document.querySelector({json.dumps(form)}).form.querySelector('button[value=requeue]').click()"
        )
        assert f"Requeued sync({run_id},)" in await page.text()
        await page.screenshot(ARTIFACTS / "dead-letter-requeued.png")

        async def ran_again() -> bool:
            letters = await asyncio.to_thread(inspect.dead_letters, pipeline_runtime.broker, "sync", 500)
            return any(d.args == (run_id,) and d.redis_id != letter.redis_id for d in letters)

        await eventually(ran_again, what="the requeued sync to run again")

        # Replay the failed webhook delivery.
        await page.goto(f"{base}/admin/deliveries?kind=webhooks&tenant=admin-browser")
        form = f"input[name=delivery_id][value='{seeded.delivery_id}']"
        await page.submit(f"document.querySelector({json.dumps(form)}).form.querySelector('button').click()")
        assert f"Replaying webhook delivery {seeded.delivery_id}." in await page.text()
        await page.screenshot(ARTIFACTS / "webhook-replayed.png")
    async with pool.acquire() as conn:
        assert await conn.fetchval(
            "SELECT count(*) FROM audit_events WHERE action = 'admin.webhook_delivery.replay' AND subject_id = $1",
            seeded.delivery_id,
        )


async def test_without_a_password_the_browser_is_denied(pool: asyncpg.Pool, pipeline_runtime: runtime.Runtime) -> None:
    async with TestServer(console_app(pool, pipeline_runtime, None)) as server, Browser() as page:
        base = str(server.make_url("")).rstrip("/")
        for path in PAGES.values():
            await page.goto(f"{base}{path}")
            assert (await page.url()).endswith("/admin/login"), path
        assert "Password login is off" in await page.text()
        assert await page.evaluate("document.querySelector('#password-login') === null")
        await page.fill("#key-login input[name=api_key]", "cbk_guess_notakey")
        await page.submit(click("#key-login button"))
        assert "That key is unknown" in await page.text()
        await page.goto(f"{base}/admin/queues")
        assert (await page.url()).endswith("/admin/login")
        await page.screenshot(ARTIFACTS / "denied-without-password.png")
