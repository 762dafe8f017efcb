"""The shared HTTP plumbing: settings and header parsing (the error map runs in test_oura.py
against the fake Oura, through a real client)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from db.env import SettingError
from pipeline.providers.http import retry_after, scrub, timeout_from_env


@pytest.mark.parametrize(
    ("value", "seconds"), [(None, 30.0), ("0.5", 0.5), ("300", 300.0)]
)  # fmt: skip
def test_the_request_timeout_defaults_to_30_seconds(value: str | None, seconds: float) -> None:
    assert timeout_from_env({} if value is None else {"PROVIDER_TIMEOUT_SECONDS": value}) == seconds


@pytest.mark.parametrize("value", ["0", "-1", "301", "soon", "nan"])
def test_a_bad_timeout_stops_the_boot_naming_the_variable(value: str) -> None:
    with pytest.raises(SettingError, match="^PROVIDER_TIMEOUT_SECONDS: expected a number of seconds"):
        timeout_from_env({"PROVIDER_TIMEOUT_SECONDS": value})


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("Wed, 21 Oct 2026 07:28:00 GMT", 30.0),
        ("Wed, 21 Oct 2026 07:27:00 GMT", 0.0),
    ],
)
def test_retry_after_is_read_as_seconds_or_an_http_date(header: str | None, seconds: float | None) -> None:
    assert retry_after(header, now=datetime(2026, 10, 21, 7, 27, 30, tzinfo=UTC)) == seconds


def test_scrub_replaces_every_secret_and_ignores_missing_ones() -> None:
    assert scrub("at-1 then rt-2 then at-1", ["at-1", None, "", "rt-2"]) == "[redacted] then [redacted] then [redacted]"
