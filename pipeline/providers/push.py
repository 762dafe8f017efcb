"""Provider push webhooks: pure signature checks and parsers, one pair per vendor.

Each ``verify_*`` raises ``BadSignature`` (answer 401) and each ``parse_*`` raises
``MalformedPush`` (answer 400) or returns a ``PushEvent``: which account changed, and whether
that calls for a sync.  No I/O here; ``bot.web.provider_hooks`` does the rest.

========  =================================================================================
WHOOP     https://developer.whoop.com/docs/developing/webhooks: JSON ``{user_id, id, type,
          trace_id}``; ``X-WHOOP-Signature`` = base64 HMAC-SHA256 of
          ``X-WHOOP-Signature-Timestamp`` (epoch milliseconds) + raw body, keyed with the
          app's client secret.
Oura      https://cloud.ouraring.com/v2/docs, "Webhook Subscription Routes": a GET
          handshake with ``verification_token`` and ``challenge`` (answer
          ``{"challenge": …}``); events as JSON ``{event_type, data_type, object_id,
          event_time, user_id}`` with ``x-oura-signature`` = hex HMAC-SHA256 of
          ``x-oura-timestamp`` (epoch seconds) + body keyed with the client secret (Oura's
          sample upper-cases it; compared without regard to case).  Oura's page shows the
          scheme only as sample code: check it against a live delivery before relying on it.
Withings  https://developer.withings.com/developer-guide/v3/data-api/keep-user-data-up-to-date/:
          a form POST ``userid, appli, startdate, enddate`` (or ``action`` for unlink/delete),
          unsigned.  We authenticate it by a secret ``token`` we put in the callback URL when
          subscribing; Withings moves callback-URL parameters into the form, so it is looked
          for in both.
========  =================================================================================
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.providers import oura, whoop
from pipeline.providers.base import Window

# How far a signed timestamp may be from our clock, either way, before it is a replay.
DEFAULT_TOLERANCE = timedelta(minutes=5)
WHOOP_SYNCS = frozenset({"recovery.updated", "sleep.updated", "workout.updated"})
WHOOP_TYPES = WHOOP_SYNCS | {"recovery.deleted", "sleep.deleted", "workout.deleted"}
OURA_OPERATIONS = frozenset({"create", "update", "delete"})
# How far before an Oura event the document it announces may be dated.
OURA_REACH = timedelta(days=1)
# A number this large is milliseconds: 10^11 seconds is the year 5138.
_MILLIS = 10**11


class BadSignature(Exception):
    """Not signed by the provider, or signed too long ago: answer 401."""


class MalformedPush(Exception):
    """Signed, but not a body the provider documents: answer 400 (never 500)."""


@dataclass(frozen=True, slots=True)
class PushEvent:
    """What changed: ``kind`` in the provider's own words, for logs; ``sync`` False for events
    a sync cannot act on (deletions, unlinks), which are acknowledged and logged only."""

    provider: str
    provider_user_id: str
    kind: str
    sync: bool = True
    # What the sync may narrow to: the days the event concerns, and the provider's collections
    # it names (None: the sync's own window, every collection).
    window: Window | None = None
    only: frozenset[str] | None = None


# -- signatures -----------------------------------------------------------------------------


def verify_whoop(
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    client_secret: str,
    *,
    now: datetime | None = None,
    tolerance: timedelta = DEFAULT_TOLERANCE,
) -> None:
    """Raises BadSignature unless ``signature`` is WHOOP's over ``timestamp`` + ``body``, fresh."""
    if not signature or not timestamp:
        raise BadSignature("X-WHOOP-Signature and X-WHOOP-Signature-Timestamp are required")
    _fresh(timestamp, now, tolerance)
    digest = hmac.new(client_secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()
    if not hmac.compare_digest(base64.b64encode(digest), signature.strip().encode()):
        raise BadSignature("the signature does not match")


def verify_oura(
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    client_secret: str,
    *,
    now: datetime | None = None,
    tolerance: timedelta = DEFAULT_TOLERANCE,
) -> None:
    """Raises BadSignature unless ``signature`` is Oura's over ``timestamp`` + ``body``, fresh."""
    if not signature or not timestamp:
        raise BadSignature("x-oura-signature and x-oura-timestamp are required")
    _fresh(timestamp, now, tolerance)
    expected = hmac.new(client_secret.encode(), timestamp.encode() + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.upper().encode(), signature.strip().upper().encode()):
        raise BadSignature("the signature does not match")


def verify_token(presented: str | None, expected: str) -> None:
    """Raises BadSignature unless ``presented`` is the shared token (Oura's handshake
    ``verification_token``, Withings' callback ``token``); compared in constant time."""
    if not presented or not hmac.compare_digest(presented.encode(), expected.encode()):
        raise BadSignature("the verification token does not match")


def _fresh(timestamp: str, now: datetime | None, tolerance: timedelta) -> None:
    stripped = timestamp.strip()
    if not stripped.isascii() or not stripped.isdigit() or len(stripped) > 16:
        raise BadSignature("the signature timestamp is not a number of seconds or milliseconds")
    value = int(stripped)
    signed_at = datetime.fromtimestamp(value / 1000 if value >= _MILLIS else value, UTC)
    if abs((now or datetime.now(UTC)) - signed_at) > tolerance:
        raise BadSignature("the signature timestamp is outside the replay window")


# -- bodies ---------------------------------------------------------------------------------


def parse_whoop(body: bytes) -> PushEvent:
    doc = json_object(body)
    kind = doc.get("type")
    if kind not in WHOOP_TYPES:
        raise MalformedPush(f"type must be one of {', '.join(sorted(WHOOP_TYPES))}")
    # WHOOP names the record (``id``) but not its time: the sync keeps its own window.
    user = _account_id(doc.get("user_id"), "user_id")
    return PushEvent("whoop", user, kind, sync=kind in WHOOP_SYNCS, only=whoop.PUSHED.get(kind))


def parse_oura(body: bytes) -> PushEvent:
    doc = json_object(body)
    operation, data_type = doc.get("event_type"), doc.get("data_type")
    if operation not in OURA_OPERATIONS:
        raise MalformedPush(f"event_type must be one of {', '.join(sorted(OURA_OPERATIONS))}")
    if not isinstance(data_type, str) or not data_type or len(data_type) > 64:
        raise MalformedPush("data_type must be a string")
    user = _account_id(doc.get("user_id"), "user_id")
    window = _day_before(doc.get("event_time"))
    only = oura.collections_for(data_type)
    return PushEvent("oura", user, f"{operation} {data_type}", operation != "delete", window, only)


def parse_withings(form: Mapping[str, str]) -> PushEvent:
    """A notification's form fields.  ``action`` (unlink, delete, update) concerns the account,
    not its data: acknowledged without a sync."""
    user = _account_id(form.get("userid"), "userid")
    action = form.get("action")
    if action:
        return PushEvent("withings", user, f"action {action[:32]}", sync=False)
    appli = form.get("appli", "")
    if not appli.isascii() or not appli.isdigit() or len(appli) > 4:
        raise MalformedPush("appli must be a number")
    return PushEvent("withings", user, f"appli {appli}", window=_epoch_window(form))


def json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object; raises MalformedPush (400) for anything else."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MalformedPush("the body is not JSON") from exc
    if not isinstance(doc, dict):
        raise MalformedPush("the body is not a JSON object")
    return doc


def _account_id(value: Any, name: str) -> str:
    """The provider's id of the account: a positive integer or a non-blank string, as text."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return str(value)
    if isinstance(value, str) and value.strip() and len(value) <= 128 and value.isprintable():
        return value.strip()
    raise MalformedPush(f"{name} must identify the account")


def _day_before(event_time: Any) -> Window | None:
    """The day up to an Oura ``event_time`` (ISO 8601; UTC when it has no offset): what a new
    or changed document is dated in (a night ends, a day's activity starts, before the event).
    None when it is missing or unreadable, and the sync picks its own window."""
    if not isinstance(event_time, str) or len(event_time) > 40:
        return None
    try:
        at = datetime.fromisoformat(event_time)
    except ValueError:
        return None
    at = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return Window(at - OURA_REACH, at)


def _epoch_window(form: Mapping[str, str]) -> Window | None:
    """``startdate``..``enddate`` (epoch seconds) when both are there and ordered; else None,
    and the sync picks its own window."""
    start, end = form.get("startdate", ""), form.get("enddate", "")
    if not all(v.isascii() and v.isdigit() and len(v) <= 11 for v in (start, end)):
        return None
    begins, ends = datetime.fromtimestamp(int(start), UTC), datetime.fromtimestamp(int(end), UTC)
    return Window(begins, ends) if begins <= ends else None
