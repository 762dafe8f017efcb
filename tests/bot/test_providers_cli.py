"""``carebeacon providers``: every provider, configured or with what it needs."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from bot.cli import main

JUNCTION_ENV = ("JUNCTION_API_KEY", "JUNCTION_API_KEY_FILE", "JUNCTION_ENVIRONMENT", "JUNCTION_REGION")


@pytest.fixture
def root_logging() -> Iterator[None]:
    """The CLI installs its own root handler; the tests after these keep pytest's."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_junction_and_libre_are_listed_with_what_they_need_then_as_configured(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], root_logging: None
) -> None:
    for name in JUNCTION_ENV:
        monkeypatch.delenv(name, raising=False)

    assert main(["providers"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert {"simulator", "oura", "whoop", "dexcom", "withings", "junction", "libre"} <= set(lines)
    assert "unavailable" in lines["junction"] and "JUNCTION_API_KEY" in lines["junction"]
    assert "read through Junction" in lines["libre"] and "JUNCTION_API_KEY" in lines["libre"]

    monkeypatch.setenv("JUNCTION_API_KEY", "sk_us_listed_key")
    assert main(["providers"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert lines["junction"].endswith("configured") and lines["libre"].endswith("configured")
    assert "sk_us_listed_key" not in out


def test_a_malformed_provider_setting_is_a_configuration_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], root_logging: None
) -> None:
    monkeypatch.setenv("JUNCTION_REGION", "mars")
    assert main(["providers"]) == 2
    assert "JUNCTION_REGION" in capsys.readouterr().err
