"""The console channel: config validation, a pure render, and a send that writes where it says."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from channels import CHANNELS, ConfigError, DeliveryStatus, build_channel
from channels.console import Console
from db.alerts import Alert

ALERT = Alert(
    id=7,
    user_id=3,
    tenant_id=1,
    patient="Pat <One>",
    category="clinical",
    severity="critical",
    metric="spo2",
    title="Blood oxygen below 90 %",
    body="spo2 86 % on 2026-11-22 (threshold 90)",
    observed_value=86.0,
    threshold=90.0,
    recorded_at=datetime(2026, 11, 22, 7, tzinfo=UTC),
    created_at=datetime(2026, 11, 22, 7, 5, tzinfo=UTC),
)


@pytest.mark.parametrize(
    ("kind", "config", "error"),
    [
        ("console", {"path": 5}, "console: path must be a non-empty string"),
        ("console", {"path": "  "}, "console: path must be a non-empty string"),
        ("console", {"stdout": "yes"}, "console: stdout must be true or false"),
        ("console", {"colour": "red"}, "console: unknown field(s) colour"),
        (
            "pager",
            {},
            "unknown channel kind 'pager'; known: console, discord, email, ntfy, slack, teams, webhook, webpush",
        ),
    ],
)
def test_invalid_config_is_refused_with_a_message_fit_for_the_user(
    kind: str, config: dict[str, Any], error: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        build_channel(kind, config)
    assert str(caught.value) == error


def test_every_registered_kind_is_its_class_kind() -> None:
    assert all(cls.kind == kind for kind, cls in CHANNELS.items())


def test_render_touches_nothing_and_carries_what_a_care_team_needs(tmp_path: Path) -> None:
    channel = build_channel("console", {"path": str(tmp_path / "sink.jsonl")})

    rendered = channel.render(ALERT)

    assert not (tmp_path / "sink.jsonl").exists()
    assert rendered.text == "[CRITICAL !!] Pat <One>: Blood oxygen below 90 % — spo2 86 % on 2026-11-22 (threshold 90)"
    assert rendered.payload["alert_id"] == 7 and rendered.payload["recorded_at"] == "2026-11-22T07:00:00+00:00"


async def test_send_prints_a_line_and_appends_json_creating_the_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sink = tmp_path / "new" / "sink.jsonl"
    channel = Console.parse_config({"path": str(sink)})

    first = await channel.send(channel.render(ALERT))
    second = await channel.send(channel.render(ALERT))

    assert first.status is second.status is DeliveryStatus.DELIVERED
    assert [json.loads(line)["severity"] for line in sink.read_text().splitlines()] == [
        "critical",
        "critical",
    ]
    assert capsys.readouterr().out.count("alert  [CRITICAL !!] Pat <One>") == 2


async def test_an_unwritable_file_is_a_transient_failure_not_an_exception(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    channel = Console.parse_config({"path": str(blocker / "sink.jsonl"), "stdout": False})

    outcome = await channel.send(channel.render(ALERT))

    assert outcome.status is DeliveryStatus.TRANSIENT
    assert outcome.detail is not None and outcome.detail.startswith("console: cannot append to file")
