"""Enqueueing when Redis is away: the row stays for the reconciler, the caller carries on."""

from __future__ import annotations

import logging
import socket

import dramatiq
import pytest
from dramatiq.brokers.redis import RedisBroker

from pipeline import triggers


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_a_send_to_an_unreachable_redis_is_logged_for_the_reconciler_and_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Nothing listens on the port: a refused connection, as while Redis restarts.
    broker = RedisBroker(url=f"redis://127.0.0.1:{unused_port()}/0")

    @dramatiq.actor(broker=broker, queue_name="sync", actor_name="probe")
    def probe(run_id: int) -> None:
        raise AssertionError("never delivered")

    with caplog.at_level(logging.WARNING, logger="pipeline.triggers"):
        sent = triggers.enqueue(probe, 7)

    assert sent is False
    assert "could not enqueue probe(7,)" in caplog.text and "the reconciler will retry" in caplog.text
