"""Prometheus metrics: a simulated sync through the real worker shows up on the web app's
``/metrics``; queue depth and age come from the broker's Redis keys; a worker's own exporter."""

from __future__ import annotations

import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import dramatiq
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from dramatiq.brokers.redis import RedisBroker
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from bot import metrics_http
from bot.app import make_app
from pipeline import runtime
from pipeline.metrics import MetricsSettings, serve
from pipeline.queue_metrics import QueueCollector
from pipeline.triggers import request_sync
from tests.helpers import eventually, make_patient

FAMILIES = {
    "carebeacon_queue_messages",
    "carebeacon_queue_oldest_message_age_seconds",
    "carebeacon_messages_processed",
    "carebeacon_messages_failed",
    "carebeacon_messages_retried",
    "carebeacon_messages_dead_lettered",
    "carebeacon_message_duration_seconds",
    "carebeacon_sync_duration_seconds",
    "carebeacon_sync_rows",
    "carebeacon_sync_runs",
    "carebeacon_deliveries",
    "carebeacon_webhook_attempts",
    "carebeacon_alerts_raised",
    "carebeacon_http_request_duration_seconds",
}


def samples(text: str) -> dict[str, list[Sample]]:
    """Family name (as the parser names it: counters without ``_total``) → its samples."""
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def value(found: list[Sample], name: str, **labels: str) -> float:
    matching = [s.value for s in found if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert matching, f"no {name} sample with {labels}"
    return sum(matching)


async def test_a_simulated_sync_shows_in_every_metric_family_on_the_web_apps_metrics(
    pool: asyncpg.Pool, worker: dramatiq.Worker, workdir: Path
) -> None:
    rt = runtime.current()
    _, user_id, connection_id, channel_id = await make_patient(
        pool, rt.keyring, tenant="metrics", alert_file=workdir / "alerts.jsonl"
    )
    await pool.execute(
        "UPDATE connections SET settings = $2 WHERE id = $1", connection_id, {"seed": "metrics", "scenarios": ["fever"]}
    )
    run_id = await request_sync(pool, connection_id, "manual")

    async def delivered() -> bool:
        return bool(
            await pool.fetchval(
                "SELECT count(*) FROM notification_logs WHERE channel_id = $1 AND status = 'delivered'", channel_id
            )
        )

    await eventually(delivered, what="the fever alert delivered to the console channel")
    assert await pool.fetchval("SELECT status FROM sync_runs WHERE id = $1", run_id) == "completed"

    async with TestClient(TestServer(make_app(pool, rt.broker))) as client:
        # The registry is the process's: other tests' requests are in it too; count ours.
        before = samples(await (await client.get("/metrics")).text())
        assert (await client.get("/healthz")).status == 200
        assert (await client.get("/no/such/page")).status == 404
        response = await client.get("/metrics")
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        found = samples(await response.text())

    assert set(found) >= FAMILIES
    assert value(found["carebeacon_sync_rows"], "carebeacon_sync_rows_total", provider="simulator", kind="received") > 0
    assert value(found["carebeacon_sync_rows"], "carebeacon_sync_rows_total", provider="simulator", kind="written") > 0
    sync_seconds = found["carebeacon_sync_duration_seconds"]
    assert value(sync_seconds, "carebeacon_sync_duration_seconds_count", provider="simulator") >= 1
    assert value(sync_seconds, "carebeacon_sync_duration_seconds_sum", provider="simulator") > 0
    assert (
        value(found["carebeacon_sync_runs"], "carebeacon_sync_runs_total", provider="simulator", status="completed")
        >= 1
    )
    deliveries = found["carebeacon_deliveries"]
    assert value(deliveries, "carebeacon_deliveries_total", kind="console", outcome="delivered") >= 1
    assert value(found["carebeacon_alerts_raised"], "carebeacon_alerts_raised_total", severity="warning") >= 1
    processed = found["carebeacon_messages_processed"]
    for actor, queue in (("sync", "sync"), ("analyse", "analytics"), ("notify", "notifications")):
        assert value(processed, "carebeacon_messages_processed_total", actor=actor, queue=queue) >= 1
    durations = found["carebeacon_message_duration_seconds"]
    assert value(durations, "carebeacon_message_duration_seconds_count", actor="sync") >= 1

    http = found["carebeacon_http_request_duration_seconds"]
    name, labels = "carebeacon_http_request_duration_seconds_count", {"route": "/healthz", "status": "200"}
    earlier = before.get("carebeacon_http_request_duration_seconds", [])
    already = sum(s.value for s in earlier if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))
    assert value(http, name, **labels) - already == 1
    # A URL no route knows is one series, whatever the URL was.
    assert value(http, "carebeacon_http_request_duration_seconds_count", route="unmatched", status="404") >= 1
    assert not any("/no/such/page" in s.labels.get("route", "") for s in http)

    queues = {s.labels["queue"] for s in found["carebeacon_queue_messages"]}
    assert {"sync", "analytics", "notifications", "webhooks", "reports"} <= queues
    states = {s.labels["state"] for s in found["carebeacon_queue_messages"]}
    assert states == {"ready", "in_progress", "delayed", "dead"}


@pytest.fixture
def scratch_broker(pipeline_runtime: runtime.Runtime) -> Iterator[RedisBroker]:
    """A broker in a namespace of its own, that no worker consumes."""
    namespace = f"cbtest-{secrets.token_hex(4)}"
    broker = RedisBroker(url=pipeline_runtime.services.redis_url, namespace=namespace)  # type: ignore[no-untyped-call]
    yield broker
    for key in broker.client.scan_iter(f"{namespace}:*"):
        broker.client.delete(key)
    broker.close()


def message(queue: str, age_seconds: float) -> dramatiq.Message[object]:
    stamp = int((time.time() - age_seconds) * 1000)
    return dramatiq.Message(
        queue_name=queue, actor_name="noop", args=(), kwargs={}, options={}, message_timestamp=stamp
    )


def test_queue_depth_and_oldest_age_are_read_from_the_brokers_keys(scratch_broker: RedisBroker) -> None:
    broker, ns = scratch_broker, scratch_broker.namespace
    broker.declare_queue("sync")
    broker.declare_queue("reports")
    broker.enqueue(message("sync", 120))
    broker.enqueue(message("sync", 5))
    broker.enqueue(message("sync", 1), delay=3_600_000)
    dead = message("sync", 600)
    broker.client.zadd(f"{ns}:sync.XQ", {dead.message_id: int(time.time() * 1000)})
    broker.client.hset(f"{ns}:sync.XQ.msgs", dead.message_id, dead.encode())

    families = {f.name: f for f in QueueCollector(lambda: broker).collect()}
    depth = {(s.labels["queue"], s.labels["state"]): s.value for s in families["carebeacon_queue_messages"].samples}
    assert depth == {
        ("reports", "ready"): 0,
        ("reports", "in_progress"): 0,
        ("reports", "delayed"): 0,
        ("reports", "dead"): 0,
        ("sync", "ready"): 2,
        ("sync", "in_progress"): 0,
        ("sync", "delayed"): 1,
        ("sync", "dead"): 1,
    }
    age = families["carebeacon_queue_oldest_message_age_seconds"].samples
    ages = {(s.labels["queue"], s.labels["state"]): s.value for s in age}
    assert set(ages) == {("sync", "ready"), ("sync", "delayed"), ("sync", "dead")}  # empty queues have no age
    assert 119 < ages[("sync", "ready")] < 180
    assert 599 < ages[("sync", "dead")] < 660


def test_an_unreachable_redis_leaves_the_queue_series_out_instead_of_failing_the_scrape() -> None:
    broker = RedisBroker(url="redis://127.0.0.1:1/0")  # type: ignore[no-untyped-call]
    families = list(QueueCollector(lambda: broker).collect())
    assert [f.samples for f in families] == [[], []]


async def test_metrics_with_a_token_refuse_a_scrape_without_it() -> None:
    app = web.Application()
    metrics_http.setup(app, MetricsSettings(token="scrape-me"))
    async with TestClient(TestServer(app)) as client:
        refused = await client.get("/metrics")
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
        allowed = await client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
        assert (refused.status, wrong.status, allowed.status) == (401, 401, 200)
        assert "carebeacon_http_request_duration_seconds" in await allowed.text()


def test_a_worker_process_serves_its_registry_on_its_own_port() -> None:
    server = serve(MetricsSettings(port=0, host="127.0.0.1", token="w0rker"))
    assert server is not None
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=5)
        assert refused.value.code == 401
        request = urllib.request.Request(url, headers={"Authorization": "Bearer w0rker"})
        with urllib.request.urlopen(request, timeout=5) as response:
            names = {f.name for f in text_string_to_metric_families(response.read().decode())}
        assert {"carebeacon_messages_processed", "carebeacon_sync_rows"} <= names
    finally:
        server.shutdown()
        server.server_close()
