"""``carebeacon up``: migrate, seed an empty database, then run the web app, the workers and
the clock in one process until Ctrl-C.

The Procfile runs the same parts as separate processes; here one Dramatiq worker serves
every queue, which is what a laptop needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web
from dramatiq import Worker

from bot.api.settings import ApiSettings
from bot.app import make_app
from bot.seed import is_empty, seed_demo
from bot.settings import BotSettings
from db.migrate import migrate
from pipeline import runtime

log = logging.getLogger(__name__)

WORKER_THREADS = 8


async def serve(settings: BotSettings) -> None:
    """Everything in one process, until SIGINT or SIGTERM."""
    rt = runtime.current()
    from pipeline import triggers
    from pipeline.jobs import schedule
    from pipeline.scheduler import Clock

    pool = await runtime.pool()
    async with pool.acquire() as conn:
        applied = await migrate(conn)
        seeded = await is_empty(conn)
    demo = await seed_demo(pool, rt.keyring, rt.db.data_dir) if seeded else None

    if demo is not None:
        # Before the clock starts, so its first sweeps see this run open and add none.
        await triggers.request_sync(pool, demo.connection_id, "initial")
    worker = Worker(rt.broker, worker_threads=WORKER_THREADS)
    worker.start()
    jobs = schedule(pool, rt.settings)
    clock = asyncio.create_task(Clock(pool, jobs).run(), name="clock")
    try:
        async with _web(settings, pool):
            _banner(settings, rt, applied, demo is not None, [job.name for job in jobs])
            await _until_signalled()
            print("stopping…", flush=True)
    finally:
        clock.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await clock
        await asyncio.to_thread(worker.stop)
        await runtime.close_pool()


async def serve_web(settings: BotSettings) -> None:
    """The web app alone (the Procfile's web process); migrations are the release step's job."""
    pool = await runtime.pool()
    try:
        async with _web(settings, pool):
            print(f"web app on {settings.public_url}", flush=True)
            await _until_signalled()
    finally:
        await runtime.close_pool()


@contextlib.asynccontextmanager
async def _web(settings: BotSettings, pool: asyncpg.Pool) -> AsyncIterator[None]:
    app = make_app(pool, runtime.current().broker, settings=settings, limits=ApiSettings.from_env(os.environ))
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.host, settings.port).start()
        yield
    finally:
        await runner.cleanup()


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def _banner(settings: BotSettings, rt: runtime.Runtime, applied: list[str], seeded: bool, jobs: list[str]) -> None:
    embedded = rt.services.embedded
    local = f"embedded, data in {rt.db.data_dir}"
    lines = [
        "CareBeacon is up",
        f"  web        {settings.public_url}  (health /healthz, readiness /readyz)",
        f"  postgres   {local if embedded and embedded.database_url else 'DATABASE_URL'}",
        f"  redis      {local if embedded and embedded.redis_url else 'REDIS_URL'}",
        f"  workers    {WORKER_THREADS} threads on queues {', '.join(sorted(rt.broker.get_declared_queues()))}",
        f"  clock      {', '.join(jobs)}",
        f"  migrations {', '.join(applied) if applied else 'up to date'}",
    ]
    if seeded:
        lines.append("  demo       seeded tenant 'demo' (simulator patient, console channel); first sync enqueued")
    lines.append("Press Ctrl-C to stop.")
    print("\n".join(lines), flush=True)
