"""What a pipeline process holds: its settings, its servers, its broker, a pool per event loop.

Dramatiq binds an actor to a broker when the actor is declared, at import time, before the
process knows its Redis URL.  So actors are declared on ``DECLARED`` (a stub broker that only
holds them) and ``start(env)`` moves every one onto the real broker.  Pools are created
lazily on the event loop that asks for one (the Dramatiq AsyncIO thread, or the web app's
loop) and closed on it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import asyncpg
import dramatiq
from dramatiq.asyncio import EventLoopThread, get_event_loop_thread, set_event_loop_thread
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import AsyncIO, CurrentMessage, Middleware

from channels import http
from channels.context import DeploymentKeys
from channels.webpush import Vapid
from db import DbSettings, Keyring, Services, create_pool, open_services, push
from db.env import Env
from pipeline import providers
from pipeline.logs import LogContext
from pipeline.metrics import MessageMetrics, MetricsSettings
from pipeline.settings import PipelineSettings
from pipeline.webhooks.settings import WebhookSettings


@dataclass
class Runtime:
    db: DbSettings
    settings: PipelineSettings
    services: Services
    broker: RedisBroker
    # Per event loop, and whether its plans are made once (``pool(generic_plans=True)``).
    pools: dict[tuple[asyncio.AbstractEventLoop, bool], asyncpg.Pool] = field(default_factory=dict)
    vapid_subject: str | None = None
    keys: DeploymentKeys | None = None
    metrics: MetricsSettings = field(default_factory=MetricsSettings)

    @property
    def keyring(self) -> Keyring:
        return self.services.keyring


_runtime: Runtime | None = None
DECLARED = StubBroker()


class DaemonAsyncIO(AsyncIO):
    """Dramatiq's AsyncIO middleware, with its event-loop thread made a daemon.

    A worker process that gets a second SIGTERM (a supervisor signalling the whole process
    group, then Dramatiq's master forwarding its own) calls ``sys.exit``; the interpreter then
    waits for every non-daemon thread, and the stock loop thread never ends: the process hangs.
    """

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        thread = EventLoopThread(self.logger)
        thread.daemon = True
        thread.start(timeout=1.0)
        set_event_loop_thread(thread)


class ClosePools(Middleware):
    """Closes the worker loop's pool and HTTP session before the AsyncIO middleware stops that loop."""

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        loop_thread = get_event_loop_thread()
        if loop_thread is not None:
            loop_thread.run_coroutine(close_pool())


def start(env: Env) -> Runtime:
    """Read settings, open (or attach to) the servers and install the broker.  Raises SettingError."""
    global _runtime
    if _runtime is not None:
        return _runtime
    db_settings = DbSettings.from_env(env)
    settings = PipelineSettings.from_env(env)
    # Before any server opens: a bad OURA_* value stops the process at boot, naming the key.
    providers.configure(env)
    vapid_subject = Vapid.subject_from_env(env)
    # Read per use by the webhook code; read here once so a bad value stops the boot.
    WebhookSettings.from_env(env)
    metrics = MetricsSettings.from_env(env)
    services = open_services(db_settings, settings.redis_url)
    broker = RedisBroker(url=services.redis_url)  # type: ignore[no-untyped-call]
    # Added, not passed as middleware=[...]: that would replace Retries, TimeLimit and the rest.
    broker.add_middleware(DaemonAsyncIO())
    broker.add_middleware(CurrentMessage())
    broker.add_middleware(ClosePools())
    # After Retries, so they see a given-up message marked failed and its retry's log lines carry ids.
    broker.add_middleware(LogContext())
    broker.add_middleware(MessageMetrics(metrics))
    dramatiq.set_broker(broker)
    _runtime = Runtime(db_settings, settings, services, broker, vapid_subject=vapid_subject, metrics=metrics)
    bind_actors()
    return _runtime


async def deployment_keys() -> DeploymentKeys:
    """What channels need from the deployment (the VAPID key pair), loaded once per process.

    Without VAPID_SUBJECT there is no VAPID identity, and Web Push channels report that
    instead of sending."""
    rt = current()
    if rt.keys is None:
        vapid = None
        if rt.vapid_subject is not None:
            async with (await pool()).acquire() as conn:
                vapid = Vapid(await push.vapid_keys(conn, rt.keyring), rt.vapid_subject)
        rt.keys = DeploymentKeys(vapid=vapid)
    return rt.keys


def bind_actors() -> None:
    """Move the actors declared so far onto the running broker (a no-op before ``start``)."""
    if _runtime is None:
        return
    for actor in DECLARED.actors.values():
        actor.broker = _runtime.broker
        _runtime.broker.declare_actor(actor)


def current() -> Runtime:
    if _runtime is None:
        raise RuntimeError("pipeline.runtime.start() has not run in this process")
    return _runtime


async def pool(*, generic_plans: bool = False) -> asyncpg.Pool:
    """The running loop's pool; ``generic_plans``: a pool of its own whose statements are planned
    once per connection (db.pool), for code that only looks rows up by key (routing)."""
    runtime = current()
    key = (asyncio.get_running_loop(), generic_plans)
    if key not in runtime.pools:
        runtime.pools[key] = await create_pool(
            runtime.services.database_url, max_size=runtime.db.pool_max, generic_plans=generic_plans
        )
    return runtime.pools[key]


async def close_pool() -> None:
    """Close the pools of the running loop, if it has any, and its channels' HTTP session
    (channels.http keeps one per loop, with keep-alive): what the loop holds goes with it."""
    await http.close_session()
    if _runtime is not None:
        loop = asyncio.get_running_loop()
        for key in [k for k in _runtime.pools if k[0] is loop]:
            await _runtime.pools.pop(key).close()


def stop() -> None:
    """Close the broker and release the servers.  Pools must be closed on their loops first."""
    global _runtime
    if _runtime is None:
        return
    _runtime.broker.close()
    _runtime.services.close()
    _runtime = None
