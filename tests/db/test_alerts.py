"""Alerts written in bulk keep ``insert``'s contract: one row and one event per new dedupe key."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

from db import alerts, tenants
from db.alerts import NewAlert


def _alert(user_id: int, key: str, value: float | None = 38.4) -> NewAlert:
    at = datetime(2026, 11, 1, 7, tzinfo=UTC)
    return NewAlert(user_id, "clinical", "warning", "body_temperature", "Fever", "body", value, 38.0, at, key,
                    rule="fever", rule_version=1)  # fmt: skip


async def test_insert_many_returns_each_new_id_in_order_and_none_for_a_known_or_repeated_key(
    conn: asyncpg.Connection,
) -> None:
    tenant = await tenants.ensure_tenant(conn, "bulk", "Bulk")
    first, second = [await tenants.ensure_user(conn, tenant, f"u{i}", f"User {i}") for i in range(2)]
    known = await alerts.insert(conn, _alert(first, "known"))

    ids = await alerts.insert_many(
        conn, [_alert(first, "a"), _alert(second, "known"), _alert(second, "b", None), _alert(first, "a")]
    )

    assert ids[1] is None and ids[3] is None
    assert ids[0] is not None and ids[2] is not None and known is not None
    stored = await conn.fetch("SELECT id, user_id, dedupe_key, observed_value FROM alerts ORDER BY id")
    assert [tuple(r) for r in stored] == [
        (known, first, "known", 38.4),
        (ids[0], first, "a", 38.4),
        (ids[2], second, "b", None),
    ]
    published = await conn.fetch("SELECT tenant_id, payload FROM events WHERE type = 'alert.created' ORDER BY id")
    assert [(r["tenant_id"], r["payload"]["data"]["alert_id"]) for r in published] == [
        (tenant, known),
        (tenant, ids[0]),
        (tenant, ids[2]),
    ]
