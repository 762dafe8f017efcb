"""Prometheus metrics of the pipeline, the middleware that counts Dramatiq messages, and the
small exporter a worker process serves them on.

Every family (docs/operations.md lists them with their labels):

    carebeacon_messages_processed_total        here, ``MessageMetrics``  every message a worker finished
    carebeacon_messages_failed_total           here                      ... that raised (a Retry included)
    carebeacon_messages_retried_total          here                      ... and went back for another try
    carebeacon_messages_dead_lettered_total    here                      ... and was given up (Dramatiq's XQ)
    carebeacon_messages_skipped_total          here                      skipped by a middleware (age limit)
    carebeacon_message_duration_seconds        here
    carebeacon_sync_duration_seconds           here, observed by pipeline.sync
    carebeacon_sync_rows_total                 here, observed by pipeline.sync
    carebeacon_sync_runs_total                 here, observed by pipeline.sync
    carebeacon_webhook_attempts_total          here, observed by pipeline.webhooks.deliver
    carebeacon_report_emails_total             here, observed by pipeline.reports.send
    carebeacon_deliveries_total                channels.sending (the one place every send's outcome passes)
    carebeacon_alerts_raised_total             db.alerts (the one place alerts are inserted)
    carebeacon_queue_messages                  pipeline.queue_metrics, read from Redis at scrape time
    carebeacon_queue_oldest_message_age_seconds  pipeline.queue_metrics
    carebeacon_http_request_duration_seconds   bot.metrics_http

Each process has its own registry (the default one): the web app serves it on ``/metrics``, and
a Dramatiq worker process on ``METRICS_PORT`` when that is set.  ``carebeacon up`` runs every
part in one process, so its ``/metrics`` has them all.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest

from db import env as envlib

log = logging.getLogger(__name__)

_BY_ACTOR = ["queue", "actor"]
PROCESSED = Counter("carebeacon_messages_processed", "Messages a worker finished, however they ended.", _BY_ACTOR)
FAILED = Counter("carebeacon_messages_failed", "Messages whose actor raised (a Retry included).", _BY_ACTOR)
RETRIED = Counter("carebeacon_messages_retried", "Failed messages sent back for another try.", _BY_ACTOR)
DEAD_LETTERED = Counter("carebeacon_messages_dead_lettered", "Messages given up: Dramatiq's dead letters.", _BY_ACTOR)
SKIPPED = Counter("carebeacon_messages_skipped", "Messages a middleware skipped (too old).", _BY_ACTOR)
MESSAGE_DURATION = Histogram(
    "carebeacon_message_duration_seconds",
    "Time an actor spent on a message.",
    _BY_ACTOR,
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900),
)
SYNC_DURATION = Histogram(
    "carebeacon_sync_duration_seconds",
    "Wall time of a completed sync run, from claim to record.",
    ["provider"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900),
)
SYNC_ROWS = Counter(
    "carebeacon_sync_rows",
    "Readings and sessions of completed sync runs: received, written (new or changed), unchanged, invalid.",
    ["provider", "kind"],
)
SYNC_RUNS = Counter(
    "carebeacon_sync_runs", "Sync runs that ended: completed, skipped or failed.", ["provider", "status"]
)
WEBHOOK_ATTEMPTS = Counter(
    "carebeacon_webhook_attempts", "Integrator webhook attempts by outcome: succeeded, retry, failed.", ["outcome"]
)

REPORT_EMAILS = Counter(
    "carebeacon_report_emails", "Weekly report emails by audience and outcome.", ["audience", "outcome"]
)


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """``METRICS_PORT``: a worker process serves its metrics there (unset: it serves none).
    ``METRICS_TOKEN``: when set, a scrape must send ``Authorization: Bearer <token>``."""

    port: int | None = None
    host: str = "0.0.0.0"
    token: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: envlib.Env) -> MetricsSettings:
        port = envlib.integer(env, "METRICS_PORT", 0, maximum=65535)
        host = envlib.text(env, "METRICS_HOST", "0.0.0.0")
        assert host is not None
        return cls(port or None, host, envlib.secret(env, "METRICS_TOKEN"))


def authorised(token: str | None, header: str | None) -> bool:
    """Whether an Authorization header satisfies ``token`` (any request does when it is None)."""
    if token is None:
        return True
    return hmac.compare_digest((header or "").encode(), f"Bearer {token}".encode())


class MessageMetrics(Middleware):
    """Counts and times each message per queue and actor.  Added after Retries, so by
    ``after_process_message`` a given-up message is already marked failed."""

    def __init__(self, settings: MetricsSettings | None = None) -> None:
        self.settings = settings or MetricsSettings()
        self.server: ThreadingHTTPServer | None = None
        self._started: dict[str, float] = {}

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self._started[message.message_id] = time.monotonic()

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        labels = (message.queue_name, message.actor_name)
        started = self._started.pop(message.message_id, None)
        if started is not None:
            MESSAGE_DURATION.labels(*labels).observe(time.monotonic() - started)
        PROCESSED.labels(*labels).inc()
        if exception is None:
            return
        FAILED.labels(*labels).inc()
        # Retries ran first: it marked the message failed (given up), or enqueued it again.
        (DEAD_LETTERED if message.failed else RETRIED).labels(*labels).inc()

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self._started.pop(message.message_id, None)
        SKIPPED.labels(message.queue_name, message.actor_name).inc()

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        # Once per process: ``carebeacon up`` and tests may boot more than one worker.
        if self.settings.port is not None and self.server is None:
            self.server = serve(self.settings)

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def serve(settings: MetricsSettings) -> ThreadingHTTPServer | None:
    """Serve this process's registry on ``settings.port`` in a daemon thread.  A port already
    taken (a second worker process on one host) is logged and leaves the process without one."""
    token = settings.token

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802  (http.server's hook name)
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
            elif not authorised(token, self.headers.get("Authorization")):
                self.send_error(401)
            else:
                body = generate_latest(REGISTRY)
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE_LATEST)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # scrapes every 15 s are not news
            pass

    try:
        server = ThreadingHTTPServer((settings.host, settings.port or 0), Handler)
    except OSError as exc:
        where = f"{settings.host}:{settings.port}"
        log.warning("metrics: cannot listen on %s (%s); this process serves no metrics", where, exc)
        return None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    log.info("metrics on http://%s:%s/metrics", settings.host, server.server_address[1])
    return server


def observe_sync(provider: str, seconds: float, *, received: int, written: int, unchanged: int, invalid: int) -> None:
    """A completed sync run's duration and row counts."""
    SYNC_DURATION.labels(provider).observe(seconds)
    for kind, value in (("received", received), ("written", written), ("unchanged", unchanged), ("invalid", invalid)):
        SYNC_ROWS.labels(provider, kind).inc(value)
    SYNC_RUNS.labels(provider, "completed").inc()
