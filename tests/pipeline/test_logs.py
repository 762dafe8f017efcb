"""Structured logs: a sync's lines carry its ids through the real worker; secrets never reach a line."""

from __future__ import annotations

import io
import json
import logging
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import dramatiq
import pytest

from db import logcontext
from db.env import SettingError
from pipeline import runtime
from pipeline.logs import DIRECT_CHARS, SECRET_PATTERNS, JsonLines, StderrLines, configure_logging, install, redact
from pipeline.triggers import request_sync
from tests.helpers import eventually, make_patient


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """Every record at INFO and above, as the production handler writes it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    install(handler, "json")
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def parsed(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def test_the_log_lines_of_a_sync_and_its_delivery_carry_their_ids(
    pool: asyncpg.Pool, worker: dramatiq.Worker, workdir: Path, json_lines: io.StringIO
) -> None:
    _, user_id, connection_id, channel_id = await make_patient(
        pool, runtime.current().keyring, tenant="logids", alert_file=workdir / "alerts.jsonl"
    )
    await pool.execute(
        "UPDATE connections SET settings = $2 WHERE id = $1", connection_id, {"seed": "logids", "scenarios": ["fever"]}
    )
    run_id = await request_sync(pool, connection_id, "manual")

    async def delivered() -> bool:
        return bool(
            await pool.fetchval(
                "SELECT count(*) FROM notification_logs WHERE channel_id = $1 AND status = 'delivered'", channel_id
            )
        )

    await eventually(delivered, what="the fever alert delivered")
    lines = parsed(json_lines)
    synced = [line for line in lines if line["message"].startswith(f"sync run {run_id} connection")]
    assert len(synced) == 1
    line = synced[0]
    assert {"time", "level", "logger", "message"} <= set(line)
    assert line["level"] == "INFO" and line["logger"] == "pipeline.sync"
    assert (line["sync_run_id"], line["connection_id"], line["user_id"]) == (run_id, connection_id, user_id)
    assert line["provider"] == "simulator" and line["actor"] == "sync" and line["message_id"]

    alert_id = await pool.fetchval("SELECT id FROM alerts WHERE user_id = $1 AND rule = 'fever'", user_id)
    sent = [line for line in lines if line["logger"] == "channels.sending" and line.get("channel_id") == channel_id]
    assert sent, "no delivery line"
    assert sent[0]["alert_id"] == alert_id and sent[0]["actor"] == "notify"
    assert isinstance(sent[0]["notification_log_id"], int)
    # Each message's ids are its own: nothing of the sync leaks into the notification's lines.
    assert "sync_run_id" not in sent[0] and sent[0]["message_id"] != line["message_id"]


@pytest.mark.parametrize(
    ("said", "written"),
    [
        ("Authorization: Bearer eyJhbGciOi.abc-def_1", "Authorization: Bearer ***"),
        ("signing with whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw+/abc=", "signing with whsec_***"),
        ("key cbk_ab12cd_Zm9vYmFyYmF6 refused", "key cbk_*** refused"),
        ("slack xoxb-1234-5678-abcdef installed", "slack xoxb-*** installed"),
        (
            "POST https://discord.com/api/webhooks/123456789/AbC-dEf_123 failed",
            "POST https://discord.com/api/webhooks/123456789/*** failed",
        ),
        (
            "POST https://hooks.slack.com/services/T000/B000/XXXXYYYY: 404",
            "POST https://hooks.slack.com/services/***: 404",
        ),
        (
            "POST https://acme.webhook.office.com/webhookb2/abc/IncomingWebhook/0123456789abcdefABCDEF-0",
            "POST https://acme.webhook.office.com/webhookb2/abc/IncomingWebhook/***",
        ),
        ("redis://default:hunter2@redis.internal:6379/0", "redis://default:***@redis.internal:6379/0"),
        ("smtp login password=s3cret&user=nurse", "smtp login password=***&user=nurse"),
        ('config {"password": "s3cret", "host": "mx"}', 'config {"password": "***", "host": "mx"}'),
        ("refresh_token=abc.def access_token: xyz", "refresh_token=*** access_token: ***"),
        ("sync run 12 connection 4: 96 readings", "sync run 12 connection 4: 96 readings"),
    ],
)
def test_known_secret_shapes_are_masked(said: str, written: str) -> None:
    assert redact(said) == written


def test_a_line_skipped_for_holding_no_marker_is_one_no_pattern_would_change() -> None:
    # Lines built from the patterns' own pieces, shuffled: whatever the markers let through
    # unchanged, the nine substitutions leave unchanged too.
    pieces = ["Bearer x", "whsec_a", "cbk_b", "xoxb-1", "discord.com/api/webhooks/1/t", "hooks.slack.com/services/T",
              ".webhook.office.com/a/" + "b" * 20, "://u:p@h", "password=x", "TOKEN: y", "alert 12", "é", " ",
              "/"]  # fmt: skip
    rng = random.Random(7)
    for _ in range(2000):
        line = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 4)))
        full = line
        for pattern in SECRET_PATTERNS:
            full = pattern.sub(lambda m: m.group(1) + "***", full)
        assert redact(line) == full, line


def test_a_secret_in_a_log_call_or_its_traceback_never_reaches_the_line(json_lines: io.StringIO) -> None:
    log = logging.getLogger("tests.secrets")
    log.warning("posting to %s with %s", "https://discord.com/api/webhooks/1/s3cr3tT0ken", "Bearer abc123")
    try:
        raise ValueError("refused whsec_c2VjcmV0c2VjcmV0")
    except ValueError:
        log.exception("delivery failed")
    text = json_lines.getvalue()
    assert "s3cr3tT0ken" not in text and "abc123" not in text and "c2VjcmV0c2VjcmV0" not in text
    first, second = parsed(json_lines)
    assert first["message"] == "posting to https://discord.com/api/webhooks/1/*** with Bearer ***"
    assert "ValueError: refused whsec_***" in second["exception"]


def test_text_lines_end_with_the_bound_ids() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    install(handler, "text")
    log = logging.getLogger("tests.text")
    log.addHandler(handler)
    log.propagate = False
    try:
        with logcontext.bound(sync_run_id=7, connection_id=3):
            log.warning("slow provider")
        log.warning("no ids")
    finally:
        log.removeHandler(handler)
        log.propagate = True
    first, second = stream.getvalue().splitlines()
    assert first.endswith("WARNING tests.text: slow provider [sync_run_id=7 connection_id=3]")
    assert second.endswith("WARNING tests.text: no ids")


def test_a_short_line_goes_straight_to_stderr_and_a_long_one_through_sys_stderr(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Under Dramatiq's CLI, sys.stderr is the pipe its main process copies from.
    own, piped = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "__stderr__", own)
    monkeypatch.setattr(sys, "stderr", piped)
    handler = StderrLines()
    install(handler, "json")
    log = logging.getLogger("tests.direct")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("alert 7 channel 3 notify log 9 (1 alert(s)): delivered")
        log.warning("x" * DIRECT_CHARS)
    finally:
        log.removeHandler(handler)
        log.propagate = True
    assert json.loads(own.getvalue())["message"].startswith("alert 7 channel 3")
    assert json.loads(piped.getvalue())["message"] == "x" * DIRECT_CHARS


@pytest.mark.parametrize(("log_format", "formatter"), [("json", JsonLines), ("text", logging.Formatter)])
def test_log_format_picks_the_formatter(log_format: str, formatter: type[logging.Formatter]) -> None:
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    root.handlers[:] = []  # configure_logging closes what it replaces: not pytest's handlers
    try:
        configure_logging({"LOG_FORMAT": log_format, "LOG_LEVEL": "WARNING"})
        assert type(root.handlers[0].formatter) is formatter
        assert root.level == logging.WARNING
    finally:
        root.handlers[:] = saved
        root.setLevel(level)


def test_an_unknown_log_format_stops_the_boot_naming_the_key() -> None:
    with pytest.raises(SettingError, match="LOG_FORMAT: expected one of auto, json, text; got 'yaml'"):
        configure_logging({"LOG_FORMAT": "yaml"})
