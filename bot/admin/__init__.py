"""The admin console at ``/admin``: server-rendered pages for operators (no JavaScript).

Queues and dead letters, sync runs, deliveries, connections and the scheduler; see
``bot/admin/auth.py`` for who may see what, and docs/operations.md for the tour.
"""

from __future__ import annotations

import os

from aiohttp import web

from bot.admin import auth, connections, deliveries, queues, scheduler, sync_runs
from bot.admin.keys import KEYRING, PIPELINE, SESSION, SETTINGS
from bot.admin.settings import AdminSettings
from bot.settings import BotSettings
from db.sealing import Keyring
from pipeline import runtime
from pipeline.settings import PipelineSettings

__all__ = ["AdminSettings", "setup"]


async def _home(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/admin/queues" if request[SESSION].deployment_wide else "/admin/sync-runs")


def setup(
    app: web.Application,
    bot: BotSettings,
    keyring: Keyring,
    *,
    settings: AdminSettings | None = None,
    pipeline: PipelineSettings | None = None,
) -> None:
    """Mount the console as a sub-app under /admin.  ``settings`` default to ADMIN_PASSWORD (or
    ADMIN_PASSWORD_FILE) read now, at app build; ``pipeline`` to the runtime's (for the jobs).
    The parent app must hold POOL and BROKER."""
    # Read at app build, which is boot, like the Slack settings beside it.
    settings = settings or AdminSettings.from_env(os.environ, public_url=bot.public_url)
    admin = web.Application(middlewares=[auth.require_session])
    admin[SETTINGS] = settings
    admin[KEYRING] = keyring
    admin[PIPELINE] = pipeline or runtime.current().settings
    admin.router.add_get("", _home)
    admin.router.add_get("/", _home)
    admin.router.add_get("/login", auth.login_form)
    admin.router.add_post("/login", auth.login)
    admin.router.add_post("/logout", auth.logout)
    admin.router.add_get("/queues", queues.show)
    admin.router.add_post("/queues/dead-letters", queues.act)
    admin.router.add_get("/sync-runs", sync_runs.show)
    admin.router.add_post("/sync-runs/requeue", sync_runs.requeue)
    admin.router.add_get("/deliveries", deliveries.show)
    admin.router.add_post("/deliveries/replay", deliveries.replay)
    admin.router.add_get("/connections", connections.show)
    admin.router.add_get("/scheduler", scheduler.show)
    app.add_subapp("/admin", admin)
