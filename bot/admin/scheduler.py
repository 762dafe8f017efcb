"""The Scheduler page: each job with its trigger, last firing and outcome, and next firing.

Last firing and outcome come from the job's latest claimed slot (``scheduler_slots``); the
next firing from the same trigger the clock uses.  Deployment-wide: a tenant session is refused.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from bot.admin.auth import deployment_only
from bot.admin.keys import PIPELINE
from bot.admin.render import page
from bot.state import POOL
from db import schedule as stored
from pipeline.jobs import schedule
from pipeline.scheduler import next_fire_time


async def show(request: web.Request) -> web.StreamResponse:
    refused = deployment_only(request)
    if refused is not None:
        return refused
    pool = request.config_dict[POOL]
    async with pool.acquire() as conn:
        latest = {slot.job: slot for slot in await stored.latest(conn)}
    now = datetime.now(UTC)
    jobs = [
        {
            "name": job.name,
            "trigger": str(job.trigger),
            "last": latest.get(job.name),
            "next": next_fire_time(job.trigger, now),
        }
        for job in schedule(pool, request.config_dict[PIPELINE])
    ]
    return page(request, "scheduler.html", jobs=jobs, now=now)
