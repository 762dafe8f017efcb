"""Provider push webhooks: the vendors' signature schemes and bodies, checked without I/O."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.providers import Window, push
from pipeline.providers.push import BadSignature, MalformedPush, PushEvent

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
SECRET = "client-secret"
BODY = json.dumps({"user_id": 10129, "id": "ecfc6a15", "type": "sleep.updated", "trace_id": "t-1"}).encode()


def whoop_signature(body: bytes, stamp: str, secret: str = SECRET) -> str:
    """As WHOOP documents: base64(HMAC-SHA256(timestamp + raw body, client secret))."""
    return base64.b64encode(hmac.new(secret.encode(), stamp.encode() + body, hashlib.sha256).digest()).decode()


def oura_signature(body: bytes, stamp: str, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), stamp.encode() + body, hashlib.sha256).hexdigest().upper()


def millis(at: datetime) -> str:
    return str(int(at.timestamp() * 1000))


def test_a_whoop_signature_over_timestamp_and_body_passes() -> None:
    stamp = millis(NOW - timedelta(seconds=3))
    push.verify_whoop(BODY, whoop_signature(BODY, stamp), stamp, SECRET, now=NOW)


@pytest.mark.parametrize(
    ("body", "stamp", "signed_with", "signed_at"),
    [
        pytest.param(BODY.replace(b"10129", b"10130"), None, SECRET, NOW, id="tampered body"),
        pytest.param(BODY, "tampered stamp", SECRET, NOW, id="tampered timestamp"),
        pytest.param(BODY, None, "another-secret", NOW, id="wrong secret"),
        pytest.param(BODY, None, SECRET, NOW - timedelta(minutes=6), id="stale"),
        pytest.param(BODY, None, SECRET, NOW + timedelta(minutes=6), id="from the future"),
    ],
)
def test_a_whoop_push_that_is_not_genuine_and_fresh_is_refused(
    body: bytes, stamp: str | None, signed_with: str, signed_at: datetime
) -> None:
    signed_stamp = millis(signed_at)
    signature = whoop_signature(BODY, signed_stamp, signed_with)
    sent_stamp = str(int(signed_stamp) + 1) if stamp == "tampered stamp" else signed_stamp
    with pytest.raises(BadSignature):
        push.verify_whoop(body, signature, sent_stamp, SECRET, now=NOW)


@pytest.mark.parametrize(("signature", "stamp"), [(None, "1"), ("sig", None), ("", ""), ("sig", "12ab"), ("s", "-5")])
def test_missing_or_garbled_signature_headers_are_refused(signature: str | None, stamp: str | None) -> None:
    with pytest.raises(BadSignature):
        push.verify_whoop(BODY, signature, stamp, SECRET, now=NOW)
    with pytest.raises(BadSignature):
        push.verify_oura(BODY, signature, stamp, SECRET, now=NOW)


def test_an_oura_signature_passes_in_either_case_and_fails_when_tampered_or_stale() -> None:
    body = json.dumps({"event_type": "update", "data_type": "sleep", "user_id": "u-1"}).encode()
    stamp = str(int(NOW.timestamp()))
    push.verify_oura(body, oura_signature(body, stamp), stamp, SECRET, now=NOW)
    push.verify_oura(body, oura_signature(body, stamp).lower(), stamp, SECRET, now=NOW)
    with pytest.raises(BadSignature):
        push.verify_oura(body + b" ", oura_signature(body, stamp), stamp, SECRET, now=NOW)
    with pytest.raises(BadSignature):
        push.verify_oura(body, oura_signature(body, stamp, "wrong"), stamp, SECRET, now=NOW)
    old = str(int((NOW - timedelta(hours=1)).timestamp()))
    with pytest.raises(BadSignature):
        push.verify_oura(body, oura_signature(body, old), old, SECRET, now=NOW)


def test_a_shared_token_must_match_exactly() -> None:
    push.verify_token("tok-1", "tok-1")
    for presented in (None, "", "tok-2", "tok-1 ", "TOK-1"):
        with pytest.raises(BadSignature):
            push.verify_token(presented, "tok-1")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (BODY, PushEvent("whoop", "10129", "sleep.updated", only=frozenset({"sleep"}))),
        (
            b'{"user_id": 7, "id": 1, "type": "recovery.updated"}',
            # A recovery is dated by its sleep: the sleeps are read with it.
            PushEvent("whoop", "7", "recovery.updated", only=frozenset({"sleep", "recovery"})),
        ),
        (b'{"user_id": 7, "id": 1, "type": "workout.deleted"}', PushEvent("whoop", "7", "workout.deleted", sync=False)),
    ],
)
def test_whoop_events_name_the_account_and_whether_to_sync(body: bytes, expected: PushEvent) -> None:
    assert push.parse_whoop(body) == expected


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[1, 2]",
        b'{"user_id": 7, "type": "cycle.exploded"}',
        b'{"user_id": true, "type": "sleep.updated"}',
        b'{"user_id": -3, "type": "sleep.updated"}',
        b'{"type": "sleep.updated"}',
        b"\xff\xfe",
    ],
)
def test_a_whoop_body_it_does_not_document_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedPush):
        push.parse_whoop(body)


def test_oura_events_sync_on_create_and_update_only() -> None:
    event = push.parse_oura(b'{"event_type": "create", "data_type": "daily_sleep", "user_id": "abc", "object_id": "x"}')
    # daily_sleep holds only scores: the night's periods are read from ``sleep``.
    assert event == PushEvent("oura", "abc", "create daily_sleep", only=frozenset({"sleep"}))
    assert not push.parse_oura(b'{"event_type": "delete", "data_type": "sleep", "user_id": "abc"}').sync
    for bad in (b'{"event_type": "eat", "data_type": "sleep", "user_id": "a"}', b'{"event_type": "update"}'):
        with pytest.raises(MalformedPush):
            push.parse_oura(bad)


def test_an_oura_event_narrows_to_the_day_before_it_and_its_collection() -> None:
    body = {"event_type": "update", "data_type": "daily_activity", "object_id": "a1", "user_id": "u"}
    event = push.parse_oura(json.dumps(body | {"event_time": "2026-03-04T09:30:00+02:00"}).encode())
    at = datetime(2026, 3, 4, 7, 30, tzinfo=UTC)
    assert event.window == Window(at - timedelta(days=1), at)
    assert event.only == frozenset({"daily_activity"})
    naive = push.parse_oura(json.dumps(body | {"event_time": "2026-03-04T07:30:00"}).encode())
    assert naive.window == Window(at - timedelta(days=1), at)  # no offset: UTC
    for unusable in ("yesterday", 1772609400, None):
        assert push.parse_oura(json.dumps(body | {"event_time": unusable}).encode()).window is None
    # A data type we do not read leaves the collections to the sync (all of them).
    assert push.parse_oura(json.dumps(body | {"data_type": "enhanced_tag"}).encode()).only is None


def test_a_withings_notification_gives_the_account_and_its_window() -> None:
    event = push.parse_withings({"userid": "12345", "appli": "1", "startdate": "1530576000", "enddate": "1530698753"})
    assert (event.provider_user_id, event.kind, event.sync) == ("12345", "appli 1", True)
    assert event.window is not None and event.window.start == datetime(2018, 7, 3, tzinfo=UTC)
    assert push.parse_withings({"userid": "1", "appli": "44"}).window is None
    assert not push.parse_withings({"userid": "1", "action": "unlink"}).sync
    for bad in ({}, {"userid": "1"}, {"userid": "1", "appli": "x"}, {"appli": "1"}, {"userid": "", "appli": "1"}):
        with pytest.raises(MalformedPush):
            push.parse_withings(bad)
