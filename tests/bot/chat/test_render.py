"""Pure parts: the PNG chart, Block Kit rendering, settings, and the off switch."""

from __future__ import annotations

import logging
import struct
import zlib

import pytest

from bot.commands import COMMANDS, Action, Button, Field, Image, Link, Reply, split_text
from bot.commands.chart import HEIGHT, WIDTH, line_chart
from bot.slack import render, setup
from bot.slack.settings import SlackSettings
from db.env import SettingError
from tests.fakes.slack_api import blocks_problems


def test_the_chart_is_a_valid_png_with_the_line_drawn() -> None:
    png = line_chart({"sleep": [50.0, None, 70.0, 80.0], "cardio": [10.0] * 4}, 4)

    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (WIDTH, HEIGHT)
    idat = png.index(b"IDAT")
    (length,) = struct.unpack(">I", png[idat - 4 : idat])
    raw = zlib.decompress(png[idat + 4 : idat + 4 + length])
    assert len(raw) == HEIGHT * (1 + 3 * WIDTH)
    assert bytes((66, 99, 235)) in raw  # the sleep line's blue


def test_a_reply_renders_within_block_kit_limits() -> None:
    reply = Reply(
        "x" * 300,
        ("a <b> & *c*", "y" * 5000),
        fields=tuple(Field(f"f{i}", "v" * 3000) for i in range(15)),
        image=Image(b"png", "https://cb.example/chat/charts/t.png"),
        buttons=(Button(Action.ACK, 7, "Acknowledge"), Button(Action.RESOLVE, 7, "Resolve", danger=True)),
        links=(Link("Open", "https://cb.example/x"),),
        context="footer",
    )
    message = render.message(reply)

    assert blocks_problems(message["blocks"]) == []
    assert message["response_type"] == "ephemeral"
    assert "a &lt;b&gt; &amp; *c*" in message["blocks"][1]["text"]["text"]
    buttons = [b for b in message["blocks"] if b["type"] == "actions"][0]["elements"]
    assert buttons[0] == {"type": "button", "action_id": "ack", "value": "ack:7",
                          "text": {"type": "plain_text", "text": "Acknowledge", "emoji": True}}  # fmt: skip
    assert "confirm" in buttons[1] and buttons[2]["url"] == "https://cb.example/x"


def test_button_ids_round_trip_and_anything_else_is_refused() -> None:
    assert Button.parse(Button(Action.SNOOZE_4H, 12, "Snooze 4h").custom_id) == (Action.SNOOZE_4H, 12)
    for bad in ("", "ack", "ack:x", "drop:1", "ack:1:2"):
        assert Button.parse(bad) is None


def test_help_comes_from_the_definitions_and_summaries_fit_discord() -> None:
    assert set(COMMANDS) == {"help", "connect", "sync", "score", "alerts", "rules"}
    assert all(len(c.summary) <= 100 for c in COMMANDS.values())
    assert COMMANDS["score"].usage == "/score [patient] [sleep|activity|cardio|recovery|glycemic]"


def test_slack_text_splits_like_a_shell_and_survives_a_stray_quote() -> None:
    assert split_text('add name="night watch" channel=3') == ("add", "name=night watch", "channel=3")
    assert split_text('say "oops') == ("say", '"oops')


@pytest.mark.parametrize(
    ("env", "error"),
    [
        ({"SLACK_CLIENT_ID": "1.2"}, "SLACK_CLIENT_SECRET"),
        ({"SLACK_CLIENT_SECRET": "s"}, "SLACK_CLIENT_ID"),
        ({"SLACK_API_URL": "ftp://x"}, "SLACK_API_URL"),
    ],
)
def test_bad_slack_settings_fail_at_boot_naming_the_key(env: dict[str, str], error: str) -> None:
    with pytest.raises(SettingError, match=error):
        SlackSettings.from_env(env)


def test_without_settings_the_slack_front_end_is_off_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    from aiohttp import web

    caplog.set_level(logging.INFO, logger="bot.slack")
    app = web.Application()
    assert SlackSettings.from_env({}).off_reason == "SLACK_SIGNING_SECRET is not set"
    assert setup(app, SlackSettings.from_env({}), keyring=None, public_url="") is False  # type: ignore[arg-type]
    assert "Slack front end is off: SLACK_SIGNING_SECRET is not set" in caplog.text
    assert not [r for r in app.router.routes() if r.resource and r.resource.canonical.startswith("/slack")]
