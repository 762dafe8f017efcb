"""The shared HTTP helper: one table from a peer's answer to a Delivery, and Retry-After in all its forms."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from channels.base import DeliveryStatus
from channels.destinations import DestinationPolicy
from channels.http import Reply, Transport, classify, redact, retry_after

URL = "https://hooks.example/services/T0001/B0002/sEcReTtOkEn?sig=AbCdEfGh"


def reply(status: int, body: bytes = b"", **headers: str) -> Reply:
    return Reply(status, {k.lower().replace("_", "-"): v for k, v in headers.items()}, body)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, DeliveryStatus.DELIVERED),
        (202, DeliveryStatus.DELIVERED),
        (204, DeliveryStatus.DELIVERED),
        (301, DeliveryStatus.PERMANENT),
        (400, DeliveryStatus.PERMANENT),
        (401, DeliveryStatus.AUTH),
        (403, DeliveryStatus.AUTH),
        (404, DeliveryStatus.PERMANENT),
        (408, DeliveryStatus.TRANSIENT),
        (410, DeliveryStatus.PERMANENT),
        (413, DeliveryStatus.PERMANENT),
        (425, DeliveryStatus.TRANSIENT),
        (429, DeliveryStatus.RATE_LIMITED),
        (500, DeliveryStatus.TRANSIENT),
        (503, DeliveryStatus.TRANSIENT),
    ],
)
def test_every_status_has_one_class(status: int, expected: DeliveryStatus) -> None:
    outcome = classify("x", reply(status), URL)
    assert (outcome.status, outcome.http_status) == (expected, status)


def test_gone_statuses_are_the_callers_choice() -> None:
    assert classify("x", reply(410), URL, gone=frozenset({410})).status is DeliveryStatus.GONE
    assert classify("x", reply(404), URL, gone=frozenset({410})).status is DeliveryStatus.PERMANENT


NOW = datetime(2026, 11, 22, 7, tzinfo=UTC)


@pytest.mark.parametrize(
    ("answer", "seconds"),
    [
        (reply(429, Retry_After="120"), 120.0),
        (reply(429, Retry_After="1.5"), 1.5),
        (reply(429, Retry_After="Sun, 22 Nov 2026 07:00:30 GMT"), 30.0),
        (reply(429, Retry_After="Sun, 22 Nov 2026 06:00:00 GMT"), 0.0),  # in the past: now
        (reply(429, Retry_After="soon"), None),
        (reply(429, Retry_After="nan"), None),
        (reply(429, Retry_After="-5"), 0.0),
        (reply(429, b'{"retry_after": 0.75, "global": false}'), 0.75),
        (reply(429, b'{"retry_after": 0.75}', X_RateLimit_Reset_After="2.5", Retry_After="3"), 2.5),
        (reply(429, b'{"retry_after": true}'), None),
        (reply(429, b"not json"), None),
    ],
)
def test_retry_after_reads_seconds_dates_and_discords_forms(answer: Reply, seconds: float | None) -> None:
    assert retry_after(answer, NOW) == seconds


def test_a_5xx_with_retry_after_keeps_it() -> None:
    outcome = classify("x", reply(503, Retry_After="9"), URL)
    assert (outcome.status, outcome.retry_after) == (DeliveryStatus.TRANSIENT, 9.0)


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'{"message": "Unknown Webhook", "code": 10015}', "x: HTTP 404: Unknown Webhook"),
        (b'{"error": "channel_not_found"}', "x: HTTP 404: channel_not_found"),
        (b"no_service", "x: HTTP 404: no_service"),
        (b"", "x: HTTP 404"),
        (b'{"code": 5}', "x: HTTP 404"),
        (b"line one\r\nline\x00two", "x: HTTP 404: line one line two"),
        (b"no such path /services/T0001/B0002/sEcReTtOkEn", "x: HTTP 404: no such path ***"),
        (b"token sEcReTtOkEn is unknown", "x: HTTP 404: token *** is unknown"),
        (b'{"message": "bad sig AbCdEfGh"}', "x: HTTP 404: bad sig ***"),
        (b"y" * 500, "x: HTTP 404: " + "y" * 79 + "…"),
    ],
)
def test_the_detail_is_short_clean_and_never_echoes_a_token(body: bytes, detail: str) -> None:
    assert classify("x", reply(404, body), URL).detail == detail


def test_header_secrets_are_masked_too() -> None:
    assert redact("token xoxb-123456 refused", URL, ("xoxb-123456",)) == "token *** refused"
    outcome = classify("x", reply(401, b'{"error": "bad xoxb-123456"}'), URL, secrets=("xoxb-123456",))
    assert outcome.detail == "x: HTTP 401: bad ***"


async def test_an_unresolvable_host_is_transient_and_a_private_one_permanent() -> None:
    strict = Transport(DestinationPolicy(), timeout=1.0)

    unresolvable = await strict.post("x", "https://no-such-host.invalid/hook/tok", b"{}")
    private = await strict.post("x", "https://10.0.0.1/hook/tok", b"{}")

    assert not isinstance(unresolvable, Reply) and not isinstance(private, Reply)
    assert unresolvable.status is DeliveryStatus.TRANSIENT and private.status is DeliveryStatus.PERMANENT
    assert "tok" not in (unresolvable.detail or "") + (private.detail or "")


def test_the_transport_reads_its_policy_from_the_environment() -> None:
    assert Transport.from_env({}).policy.allow_private is False
    assert Transport.from_env({"CAREBEACON_ALLOW_PRIVATE_DESTINATIONS": "true"}).policy.allow_private is True
    assert Transport().timeout == 10.0
