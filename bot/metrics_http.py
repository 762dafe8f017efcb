"""``GET /metrics`` for Prometheus, and the middleware that times every request by route.

The route label is the route's canonical path (``/v1/users/{user_id}``), never the raw URL, so
the number of series stays bounded whatever clients request; a request no route matched is
``unmatched``.  The endpoint is open unless ``METRICS_TOKEN`` is set (then it wants
``Authorization: Bearer <token>``): bind it, or scrape it, on an internal network.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from dramatiq.brokers.redis import RedisBroker
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Histogram, generate_latest

from pipeline import runtime
from pipeline.metrics import MetricsSettings, authorised
from pipeline.queue_metrics import QueueCollector

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

HTTP_DURATION = Histogram(
    "carebeacon_http_request_duration_seconds",
    "Time to answer an HTTP request, by method, route and status.",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
_collector: QueueCollector | None = None


@web.middleware
async def observe_http(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        HTTP_DURATION.labels(request.method, route, str(status)).observe(time.perf_counter() - started)


def setup(app: web.Application, settings: MetricsSettings) -> None:
    """Add ``GET /metrics`` and the timing middleware (outermost, so it sees final statuses), and
    register the queue collector once per process."""
    global _collector
    token = settings.token

    async def metrics(request: web.Request) -> web.Response:
        if not authorised(token, request.headers.get("Authorization")):
            raise web.HTTPUnauthorized(headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
        # The queue collector asks Redis synchronously: off the event loop.
        body = await asyncio.to_thread(generate_latest, REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.middlewares.insert(0, observe_http)
    app.router.add_get("/metrics", metrics)
    if _collector is None:
        _collector = QueueCollector(_broker)
        REGISTRY.register(_collector)


def _broker() -> RedisBroker | None:
    try:
        return runtime.current().broker
    except RuntimeError:  # no runtime in this process (yet): no queue series
        return None
