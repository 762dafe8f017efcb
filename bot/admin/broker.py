"""What Dramatiq's Redis broker holds for each queue, read the way its dispatch.lua writes it.

Per queue ``q`` under the namespace ``ns`` (dramatiq/brokers/redis/dispatch.lua):

- ``ns:q`` is a list of message ids ready to fetch; ``ns:q.msgs`` maps ids to message data
  (ready ones, and fetched ones until acked);
- ``ns:q.DQ`` and ``ns:q.DQ.msgs`` are the same for delayed messages (retries with backoff,
  jittered syncs); a worker fetches them early and holds them until their eta, so the hash,
  not the list, counts them;
- ``ns:q.XQ`` is a sorted set of dead-lettered ids scored by when they died (ms), with their
  data in ``ns:q.XQ.msgs``; the broker drops them after ``dead_message_ttl``;
- ``ns:__acks__.<worker>.q`` is the set of ids a worker fetched and has not acked: in progress.
  A worker missing from ``ns:__heartbeats__`` for ``heartbeat_timeout`` is dead; maintenance
  hands its fetched messages back to the queue later, so they are counted apart.

These calls block (redis-py); callers run them in a thread.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker

# Moves one dead letter back onto its queue, unless someone else moved or deleted it first.
# KEYS: xq, xq.msgs, queue, queue.msgs; ARGV: dead id, new id, new message data.
_REQUEUE = """
if redis.call("zrem", KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call("hdel", KEYS[2], ARGV[1])
redis.call("hset", KEYS[4], ARGV[2], ARGV[3])
redis.call("rpush", KEYS[3], ARGV[2])
return 1
"""
TRACEBACK_LINES = 12


@dataclass(frozen=True, slots=True)
class QueueStats:
    name: str
    ready: int
    in_progress: int
    held_by_dead_workers: int
    delayed: int
    dead: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    redis_id: str
    message_id: str
    actor: str
    args: tuple[Any, ...]
    died_at: datetime
    retries: int
    error: str
    traceback: str


def queues(broker: RedisBroker) -> list[str]:
    """The broker's declared queues, without their delay queues."""
    return sorted(q for q in broker.get_declared_queues() if not q.endswith((".DQ", ".XQ")))


def stats(broker: RedisBroker) -> list[QueueStats]:
    """Depth, in progress, delayed and dead letters of every declared queue: one round trip for
    the counts, one SCAN over the ack sets (a few keys per worker process)."""
    # redis-py's return types are unions over its sync and async clients: Any is the honest type.
    client: Any = broker.client
    ns, names = broker.namespace, queues(broker)
    now_ms = int(time.time() * 1000)
    live = {w.decode() for w in client.zrangebyscore(f"{ns}:__heartbeats__", now_ms - broker.heartbeat_timeout, "+inf")}
    pipe: Any = client.pipeline(transaction=False)
    for q in names:
        pipe.llen(f"{ns}:{q}").hlen(f"{ns}:{q}.DQ.msgs").zcard(f"{ns}:{q}.XQ")
    counts = pipe.execute()
    ack_keys = list(client.scan_iter(match=f"{ns}:__acks__.*", count=1000))
    pipe = client.pipeline(transaction=False)
    for key in ack_keys:
        pipe.scard(key)
    held: dict[tuple[str, bool], int] = {}
    prefix = f"{ns}:__acks__."
    for key, size in zip(ack_keys, pipe.execute(), strict=True):
        worker, _, queue = key.decode()[len(prefix) :].partition(".")
        held[(queue, worker in live)] = held.get((queue, worker in live), 0) + size
    return [
        QueueStats(
            q,
            ready=counts[3 * i],
            in_progress=held.get((q, True), 0),
            held_by_dead_workers=held.get((q, False), 0),
            delayed=counts[3 * i + 1],
            dead=counts[3 * i + 2],
        )
        for i, q in enumerate(names)
    ]


def dead_letters(broker: RedisBroker, queue: str, limit: int = 50) -> list[DeadLetter]:
    """The queue's newest dead letters, newest first, at most ``limit``."""
    client: Any = broker.client
    xq = f"{broker.namespace}:{queue}.XQ"
    found = client.zrevrange(xq, 0, limit - 1, withscores=True)
    if not found:
        return []
    data = client.hmget(f"{xq}.msgs", [rid for rid, _ in found])
    letters = []
    for (rid, score), raw in zip(found, data, strict=True):
        if raw is None:  # deleted between the two reads
            continue
        message = Message.decode(raw)
        trace = str(message.options.get("traceback") or "")
        lines = [line for line in trace.strip().splitlines() if line.strip()]
        letters.append(
            DeadLetter(
                redis_id=rid.decode(),
                message_id=message.message_id,
                actor=message.actor_name,
                args=tuple(message.args),
                died_at=datetime.fromtimestamp(score / 1000, UTC),
                retries=int(message.options.get("retries", 0)),
                error=lines[-1] if lines else "",
                traceback="\n".join(lines[-TRACEBACK_LINES:]),
            )
        )
    return letters


def peek(broker: RedisBroker, queue: str, redis_id: str) -> Message[Any] | None:
    client: Any = broker.client
    raw = client.hget(f"{broker.namespace}:{queue}.XQ.msgs", redis_id)
    return None if raw is None else Message.decode(raw)


def requeue(broker: RedisBroker, queue: str, redis_id: str) -> Message[Any] | None:
    """Move the dead letter back to the end of its queue with a fresh retry budget (its retry
    count and traceback dropped); returns the message, or None when it was already gone."""
    dead = peek(broker, queue, redis_id)
    if dead is None:
        return None
    kept = {k: v for k, v in dead.options.items() if k not in ("retries", "traceback", "eta", "redis_message_id")}
    new_id = str(uuid.uuid4())
    revived: Message[Any] = Message(
        queue_name=queue,
        actor_name=dead.actor_name,
        args=dead.args,
        kwargs=dead.kwargs,
        options={**kept, "redis_message_id": new_id},
        message_id=dead.message_id,
        message_timestamp=dead.message_timestamp,
    )
    ns = broker.namespace
    keys = [f"{ns}:{queue}.XQ", f"{ns}:{queue}.XQ.msgs", f"{ns}:{queue}", f"{ns}:{queue}.msgs"]
    client: Any = broker.client
    moved = client.eval(_REQUEUE, 4, *keys, redis_id, new_id, revived.encode())
    return revived if moved else None


def delete(broker: RedisBroker, queue: str, redis_id: str) -> bool:
    """Drop the dead letter for good; False when it was already gone."""
    xq = f"{broker.namespace}:{queue}.XQ"
    client: Any = broker.client
    pipe = client.pipeline(transaction=True)
    pipe.zrem(xq, redis_id).hdel(f"{xq}.msgs", redis_id)
    removed, _ = pipe.execute()
    return bool(removed)
