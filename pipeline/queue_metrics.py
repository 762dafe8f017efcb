"""Queue depth and age per queue, read from the Dramatiq Redis broker when Prometheus scrapes.

The Redis broker keeps, under its namespace (``dramatiq``):

    <ns>:<queue>            list of ready message ids, oldest first (workers LPOP)
    <ns>:<queue>.msgs       hash id → message, for ready messages and those a worker holds
    <ns>:<queue>.DQ[.msgs]  the same two for delayed messages (retries, timers)
    <ns>:<queue>.XQ[.msgs]  dead letters: a sorted set scored by when they died, and their bodies

So a scrape costs a fixed handful of O(1) commands per queue, in two round trips, whatever the
depth: it never scans a hash or counts a table.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)


class QueueCollector(Collector):
    """``broker`` is asked for at every scrape: None (no runtime yet) yields nothing."""

    def __init__(self, broker: Callable[[], RedisBroker | None]) -> None:
        self.broker = broker

    def collect(self) -> Iterable[Metric]:
        depth = GaugeMetricFamily(
            "carebeacon_queue_messages",
            "Messages per Dramatiq queue: ready, in_progress (held by a worker), delayed, dead (dead letters).",
            labels=["queue", "state"],
        )
        age = GaugeMetricFamily(
            "carebeacon_queue_oldest_message_age_seconds",
            "Age (since it was first enqueued) of the oldest message per queue and state; absent when empty.",
            labels=["queue", "state"],
        )
        broker = self.broker()
        if broker is not None:
            try:
                self._read(broker, depth, age)
            except (redis.RedisError, OSError) as exc:
                # An unreachable Redis shows as missing series (and /readyz says why), not a failed scrape.
                log.warning("queue metrics: cannot read Redis (%s)", type(exc).__name__)
        yield depth
        yield age

    def _read(self, broker: RedisBroker, depth: GaugeMetricFamily, age: GaugeMetricFamily) -> None:
        ns = broker.namespace
        queues = sorted(q for q in broker.get_declared_queues() if not q.endswith((".DQ", ".XQ")))
        client = broker.client
        with client.pipeline(transaction=False) as pipe:
            for q in queues:
                key = f"{ns}:{q}"
                pipe.llen(key)
                pipe.hlen(f"{key}.msgs")
                pipe.hlen(f"{key}.DQ.msgs")
                pipe.zcard(f"{key}.XQ")
                pipe.lindex(key, 0)
                pipe.lindex(f"{key}.DQ", 0)
                pipe.zrange(f"{key}.XQ", 0, 0)
            counts = pipe.execute()
        oldest: list[tuple[str, str, str, bytes]] = []  # queue, state, hash, message id
        for i, q in enumerate(queues):
            ready, held, delayed, dead, first, first_delayed, first_dead = counts[i * 7 : i * 7 + 7]
            for state, value in (("ready", ready), ("in_progress", max(held - ready, 0)),
                                 ("delayed", delayed), ("dead", dead)):  # fmt: skip
                depth.add_metric([q, state], value)
            key = f"{ns}:{q}"
            firsts = [("ready", f"{key}.msgs", first), ("delayed", f"{key}.DQ.msgs", first_delayed),
                      ("dead", f"{key}.XQ.msgs", first_dead[0] if first_dead else None)]  # fmt: skip
            for state, hash_key, found in firsts:
                if found is not None:
                    oldest.append((q, state, hash_key, found))
        if not oldest:
            return
        with client.pipeline(transaction=False) as pipe:
            for _, _, hash_key, message_id in oldest:
                pipe.hget(hash_key, message_id.decode())
            bodies = pipe.execute()
        now_ms = time.time() * 1000
        for (q, state, _, _), body in zip(oldest, bodies, strict=True):
            if body is None:  # taken between the two round trips
                continue
            try:
                stamp = dramatiq.Message.decode(body).message_timestamp
            except dramatiq.errors.DecodeError:
                continue
            age.add_metric([q, state], max(now_ms - stamp, 0.0) / 1000)
