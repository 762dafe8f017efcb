"""Integrator webhook endpoints (sealed signing secrets), their deliveries and attempts.

A delivery is one event to one endpoint; its ``msg_id`` (the ``webhook-id`` header) is fixed
at creation, so retries and replays carry the same id.  Its status moves
pending → delivering → succeeded | failed, or back to pending for a retry; the claim is a
conditional UPDATE, so two messages for one delivery never send it twice at once.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from db.sealing import Keyring

TABLE, SECRET, PREVIOUS = "webhook_endpoints", "secret_sealed", "previous_secret_sealed"
BODY_CHARS = 1024  # of a receiver's answer kept per attempt


def new_secret() -> str:
    """A fresh ``whsec_`` secret: 32 random bytes in standard base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: int
    tenant_id: int
    url: str
    events: tuple[str, ...]
    description: str
    enabled: bool
    disabled_reason: str | None
    disabled_at: datetime | None
    consecutive_failures: int
    previous_secret_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    secret_sealed: str = field(repr=False)
    previous_secret_sealed: str | None = field(repr=False)

    def signing_secrets(self, keyring: Keyring, now: datetime) -> list[str]:
        """The current secret, then the previous one while its grace period lasts."""
        found = [keyring.open(self.secret_sealed, table=TABLE, column=SECRET, row_id=self.id).decode()]
        expires = self.previous_secret_expires_at
        if self.previous_secret_sealed and expires is not None and expires > now:
            found.append(
                keyring.open(self.previous_secret_sealed, table=TABLE, column=PREVIOUS, row_id=self.id).decode()
            )
        return found

    def public(self) -> dict[str, Any]:
        """What the API shows: never a secret."""
        stamp = _iso
        return {
            "id": self.id,
            "url": self.url,
            "events": list(self.events),
            "description": self.description,
            "enabled": self.enabled,
            "disabled_reason": self.disabled_reason,
            "disabled_at": stamp(self.disabled_at),
            "consecutive_failures": self.consecutive_failures,
            "previous_secret_expires_at": stamp(self.previous_secret_expires_at),
            "created_at": stamp(self.created_at),
            "updated_at": stamp(self.updated_at),
        }


_COLUMNS = (
    "id, tenant_id, url, events, description, enabled, disabled_reason, disabled_at, consecutive_failures,"
    " previous_secret_expires_at, created_at, updated_at, secret_sealed, previous_secret_sealed"
)


def _endpoint(row: asyncpg.Record) -> Endpoint:
    return Endpoint(**(dict(row) | {"events": tuple(row["events"])}))


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


async def create(
    conn: asyncpg.Connection, keyring: Keyring, *, tenant_id: int, url: str, events: list[str], description: str
) -> tuple[Endpoint, str]:
    """A new endpoint and its secret (the only time the caller sees it in plain)."""
    # The id comes first because the sealed secret is bound to it.
    endpoint_id: int = await conn.fetchval(f"SELECT nextval(pg_get_serial_sequence('{TABLE}', 'id'))")
    secret = new_secret()
    row = await conn.fetchrow(
        f"INSERT INTO {TABLE} (id, tenant_id, url, events, description, secret_sealed)"
        f" VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_COLUMNS}",
        endpoint_id,
        tenant_id,
        url,
        events,
        description,
        keyring.seal(secret.encode(), table=TABLE, column=SECRET, row_id=endpoint_id),
    )
    return _endpoint(row), secret


async def get(conn: asyncpg.Connection, tenant_id: int, endpoint_id: int) -> Endpoint | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM {TABLE} WHERE id = $1 AND tenant_id = $2", endpoint_id, tenant_id
    )
    return _endpoint(row) if row else None


async def list_for(conn: asyncpg.Connection, tenant_id: int) -> list[Endpoint]:
    rows = await conn.fetch(f"SELECT {_COLUMNS} FROM {TABLE} WHERE tenant_id = $1 ORDER BY id LIMIT 500", tenant_id)
    return [_endpoint(r) for r in rows]


async def update(
    conn: asyncpg.Connection, tenant_id: int, endpoint_id: int, changes: dict[str, Any]
) -> Endpoint | None:
    """Apply ``changes`` (url, events, description, enabled).  Enabling clears the reason and the
    failure streak.  None when the endpoint is not the tenant's."""
    sets, args = ["updated_at = now()"], [endpoint_id, tenant_id]
    for name in ("url", "events", "description", "enabled"):
        if name in changes:
            args.append(changes[name])
            sets.append(f"{name} = ${len(args)}")
    if changes.get("enabled") is True:
        sets += ["disabled_reason = NULL", "disabled_at = NULL", "consecutive_failures = 0", "failing_since = NULL"]
    elif changes.get("enabled") is False:
        sets += ["disabled_reason = 'disabled through the API'", "disabled_at = now()"]
    row = await conn.fetchrow(
        f"UPDATE {TABLE} SET {', '.join(sets)} WHERE id = $1 AND tenant_id = $2 RETURNING {_COLUMNS}", *args
    )
    return _endpoint(row) if row else None


async def delete(conn: asyncpg.Connection, tenant_id: int, endpoint_id: int) -> bool:
    found = await conn.fetchval(
        f"DELETE FROM {TABLE} WHERE id = $1 AND tenant_id = $2 RETURNING id", endpoint_id, tenant_id
    )
    return found is not None


async def rotate(
    conn: asyncpg.Connection, keyring: Keyring, tenant_id: int, endpoint_id: int, grace: timedelta
) -> tuple[Endpoint, str] | None:
    """Give the endpoint a new secret; the current one keeps signing for ``grace``.

    Returns the endpoint and its new secret, or None when it is not the tenant's.  A secret
    still in its grace period from an earlier rotation is dropped (one old key at a time).
    """
    async with conn.transaction():
        row = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM {TABLE} WHERE id = $1 AND tenant_id = $2 FOR UPDATE", endpoint_id, tenant_id
        )
        if row is None:
            return None
        current = keyring.open(row["secret_sealed"], table=TABLE, column=SECRET, row_id=endpoint_id)
        secret = new_secret()
        updated = await conn.fetchrow(
            f"UPDATE {TABLE} SET secret_sealed = $2, previous_secret_sealed = $3,"
            " previous_secret_expires_at = now() + $4::interval, updated_at = now()"
            f" WHERE id = $1 RETURNING {_COLUMNS}",
            endpoint_id,
            keyring.seal(secret.encode(), table=TABLE, column=SECRET, row_id=endpoint_id),
            keyring.seal(current, table=TABLE, column=PREVIOUS, row_id=endpoint_id),
            grace,
        )
    return _endpoint(updated), secret


async def disable(conn: asyncpg.Connection, endpoint_id: int, reason: str) -> Endpoint | None:
    """Disable an enabled endpoint; None when it was already disabled (or is gone)."""
    row = await conn.fetchrow(
        f"UPDATE {TABLE} SET enabled = false, disabled_reason = $2, disabled_at = now(), updated_at = now()"
        f" WHERE id = $1 AND enabled RETURNING {_COLUMNS}",
        endpoint_id,
        reason,
    )
    return _endpoint(row) if row else None


# -- deliveries --------------------------------------------------------------------------------


async def dispatch(conn: asyncpg.Connection, limit: int = 500) -> list[int]:
    """Fan undispatched events out to their tenant's enabled, subscribed endpoints and mark
    them dispatched; returns the new delivery ids.  Concurrent callers take disjoint events."""
    rows = await conn.fetch(
        "WITH ev AS (SELECT id, tenant_id, type FROM events WHERE dispatched_at IS NULL"
        "   ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED),"
        " marked AS (UPDATE events SET dispatched_at = now() WHERE id IN (SELECT id FROM ev))"
        " INSERT INTO webhook_deliveries (event_id, endpoint_id, msg_id)"
        " SELECT ev.id, e.id, 'msg_' || replace(gen_random_uuid()::text, '-', '')"
        " FROM ev JOIN webhook_endpoints e ON e.tenant_id = ev.tenant_id AND e.enabled AND ev.type = ANY (e.events)"
        " ORDER BY ev.id, e.id ON CONFLICT (event_id, endpoint_id) DO NOTHING RETURNING id",
        limit,
    )
    return [r["id"] for r in rows]


async def create_delivery(conn: asyncpg.Connection, event_id: int, endpoint_id: int) -> int:
    """A pending delivery of one event to one endpoint (the test event)."""
    delivery_id: int = await conn.fetchval(
        "INSERT INTO webhook_deliveries (event_id, endpoint_id, msg_id)"
        " VALUES ($1, $2, 'msg_' || replace(gen_random_uuid()::text, '-', '')) RETURNING id",
        event_id,
        endpoint_id,
    )
    return delivery_id


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery this worker now holds: everything one attempt needs."""

    delivery_id: int
    attempt: int
    retries: int  # spent before this attempt
    msg_id: str
    event_type: str
    payload: dict[str, Any] = field(repr=False)
    endpoint: Endpoint


async def fail_if_disabled(conn: asyncpg.Connection, delivery_id: int) -> bool:
    """Fail a pending delivery whose endpoint is disabled (no attempt is made); True if it did."""
    found = await conn.fetchval(
        "UPDATE webhook_deliveries d SET status = 'failed', last_error = 'the endpoint is disabled',"
        " finished_at = now() FROM webhook_endpoints e WHERE d.id = $1 AND e.id = d.endpoint_id AND NOT e.enabled"
        " AND d.status IN ('pending', 'delivering') RETURNING d.id",
        delivery_id,
    )
    return found is not None


async def postpone_if_saturated(
    conn: asyncpg.Connection, delivery_id: int, lease: timedelta, limit: int, delay: timedelta
) -> bool:
    """When the delivery's endpoint already has ``limit`` attempts in flight, move the
    delivery's next attempt ``delay`` later and return True.  A soft limit: two workers
    checking at the same instant may both pass."""
    found = await conn.fetchval(
        "UPDATE webhook_deliveries d SET next_attempt_at = now() + $4::interval"
        " WHERE d.id = $1 AND d.status = 'pending' AND (SELECT count(*) FROM webhook_deliveries o"
        "   WHERE o.endpoint_id = d.endpoint_id AND o.status = 'delivering' AND o.id <> d.id"
        "   AND o.claimed_at >= now() - $2::interval) >= $3"
        " RETURNING d.id",
        delivery_id,
        lease,
        limit,
        delay,
    )
    return found is not None


async def claim(conn: asyncpg.Connection, delivery_id: int, lease: timedelta) -> Claimed | None:
    """Take a due delivery for one attempt; None when it is finished, not due yet, or held by a
    worker whose lease has not run out."""
    row = await conn.fetchrow(
        "UPDATE webhook_deliveries SET status = 'delivering', attempts = attempts + 1, claimed_at = now()"
        " WHERE id = $1 AND (status = 'pending' AND next_attempt_at <= now() + interval '1 second'"
        "   OR status = 'delivering' AND claimed_at < now() - $2::interval)"
        " RETURNING id, attempts, retries, msg_id, event_id, endpoint_id",
        delivery_id,
        lease,
    )
    if row is None:
        return None
    event = await conn.fetchrow("SELECT type, payload FROM events WHERE id = $1", row["event_id"])
    endpoint = await conn.fetchrow(f"SELECT {_COLUMNS} FROM {TABLE} WHERE id = $1", row["endpoint_id"])
    return Claimed(
        row["id"], row["attempts"], row["retries"], row["msg_id"], event["type"], event["payload"], _endpoint(endpoint)
    )


async def record_attempt(
    conn: asyncpg.Connection,
    delivery_id: int,
    attempt: int,
    *,
    http_status: int | None,
    latency_ms: int,
    response_body: str | None,
    error_class: str | None,
    detail: str | None,
) -> None:
    await conn.execute(
        "INSERT INTO webhook_attempts"
        " (delivery_id, attempt, http_status, latency_ms, response_body, error_class, detail)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (delivery_id, attempt) DO NOTHING",
        delivery_id,
        attempt,
        http_status,
        latency_ms,
        response_body[:BODY_CHARS] if response_body is not None else None,
        error_class,
        detail,
    )


async def succeed(conn: asyncpg.Connection, delivery_id: int, endpoint_id: int) -> None:
    await conn.execute(
        "UPDATE webhook_deliveries SET status = 'succeeded', last_error = NULL, finished_at = now() WHERE id = $1",
        delivery_id,
    )
    await conn.execute(
        f"UPDATE {TABLE} SET consecutive_failures = 0, failing_since = NULL WHERE id = $1 AND consecutive_failures > 0",
        endpoint_id,
    )


async def retry_later(conn: asyncpg.Connection, delivery_id: int, delay: timedelta, error: str) -> None:
    await conn.execute(
        "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = now() + $2::interval, last_error = $3,"
        " retries = retries + 1 WHERE id = $1",
        delivery_id,
        delay,
        error,
    )


async def fail(conn: asyncpg.Connection, delivery_id: int, endpoint_id: int, error: str) -> tuple[int, timedelta]:
    """Fail the delivery for good and extend its endpoint's failure streak; returns the streak's
    length and how long it has lasted."""
    await conn.execute(
        "UPDATE webhook_deliveries SET status = 'failed', last_error = $2, finished_at = now() WHERE id = $1",
        delivery_id,
        error,
    )
    row = await conn.fetchrow(
        f"UPDATE {TABLE} SET consecutive_failures = consecutive_failures + 1,"
        " failing_since = coalesce(failing_since, now()) WHERE id = $1"
        " RETURNING consecutive_failures, now() - failing_since AS failing_for",
        endpoint_id,
    )
    return (row["consecutive_failures"], row["failing_for"]) if row else (0, timedelta(0))


async def replay(conn: asyncpg.Connection, endpoint_id: int, delivery_ids: list[int] | None = None) -> list[int]:
    """Make finished deliveries of the endpoint pending again (same ``msg_id``); all of its failed
    ones when ``delivery_ids`` is None.  Returns the ids to enqueue."""
    rows = await conn.fetch(
        "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = now(), finished_at = NULL, retries = 0"
        " WHERE endpoint_id = $1 AND CASE WHEN $2::bigint[] IS NULL THEN status = 'failed'"
        "   ELSE status <> 'delivering' AND id = ANY ($2) END RETURNING id",
        endpoint_id,
        delivery_ids,
    )
    return sorted(r["id"] for r in rows)


async def deliveries(conn: asyncpg.Connection, endpoint_id: int, limit: int = 50) -> list[dict[str, Any]]:
    """The endpoint's latest deliveries, newest first, each with its attempts (oldest first)."""
    rows = await conn.fetch(
        "SELECT d.id, d.event_id, e.type AS event_type, d.msg_id, d.status, d.attempts, d.next_attempt_at,"
        " d.last_error, d.created_at, d.finished_at FROM webhook_deliveries d JOIN events e ON e.id = d.event_id"
        " WHERE d.endpoint_id = $1 ORDER BY d.id DESC LIMIT $2",
        endpoint_id,
        limit,
    )
    attempts = await conn.fetch(
        "SELECT delivery_id, attempt, http_status, latency_ms, response_body, error_class, detail, created_at"
        " FROM webhook_attempts WHERE delivery_id = ANY ($1) ORDER BY delivery_id, attempt",
        [r["id"] for r in rows],
    )
    by_delivery: dict[int, list[dict[str, Any]]] = {}
    for a in attempts:
        item = dict(a) | {"created_at": _iso(a["created_at"])}
        by_delivery.setdefault(item.pop("delivery_id"), []).append(item)
    return [
        dict(r)
        | {
            "next_attempt_at": _iso(r["next_attempt_at"]) if r["status"] == "pending" else None,
            "created_at": _iso(r["created_at"]),
            "finished_at": _iso(r["finished_at"]),
            "attempt_log": by_delivery.get(r["id"], []),
        }
        for r in rows
    ]


async def delivery_endpoint(conn: asyncpg.Connection, delivery_id: int) -> int | None:
    found: int | None = await conn.fetchval("SELECT endpoint_id FROM webhook_deliveries WHERE id = $1", delivery_id)
    return found


async def lost(conn: asyncpg.Connection, older_than: timedelta, lease: timedelta) -> list[int]:
    """Deliveries whose message seems lost: pending and overdue by ``older_than``, or held by a
    worker for longer than ``lease`` (it died mid-attempt).  Each is made pending and due now,
    so it is re-sent once per ``older_than``, not on every pass."""
    rows = await conn.fetch(
        "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = now() WHERE id IN ("
        "  SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at < now() - $1::interval"
        "   OR status = 'delivering' AND claimed_at < now() - $2::interval"
        "  ORDER BY id LIMIT 1000 FOR UPDATE SKIP LOCKED)"
        " RETURNING id",
        older_than,
        lease,
    )
    return sorted(r["id"] for r in rows)
