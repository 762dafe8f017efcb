"""Notification rules as they are written and as the API (bot/api/rules.py) reads them: which alerts
go to which channels, on whose clock (an owner's, a care team's or UTC's), with quiet hours, cooldown,
grouping and escalation.  What routing reads of them is in db/routing.py."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg

from db.notification_channels import tenant_channels

DEFAULT_COOLDOWN = timedelta(minutes=60)


def _check_timezone(name: str) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {name!r}; use an IANA name such as Europe/London") from None


# Care teams own rules (a team rule runs on the team's clock); the API's team CRUD is db/care_teams.py.
async def create_care_team(conn: asyncpg.Connection, *, tenant_id: int, name: str, timezone: str = "UTC") -> int:
    """Raises ValueError for an unknown timezone."""
    _check_timezone(timezone)
    team_id: int = await conn.fetchval(
        "INSERT INTO care_teams (tenant_id, name, timezone) VALUES ($1, $2, $3) RETURNING id", tenant_id, name, timezone
    )
    return team_id


async def create_rule(
    conn: asyncpg.Connection,
    *,
    tenant_id: int,
    name: str,
    channel_id: int | None = None,
    channel_ids: Sequence[int] = (),
    escalation_channel_ids: Sequence[int] = (),
    min_severity: str = "warning",
    patient_id: int | None = None,
    owner_user_id: int | None = None,
    care_team_id: int | None = None,
    categories: list[str] | None = None,
    metrics: list[str] | None = None,
    quiet_hours: tuple[time, time] | None = None,
    cooldown: timedelta = DEFAULT_COOLDOWN,
    group_wait: timedelta = timedelta(0),
    escalate_after: timedelta | None = None,
) -> int:
    """A rule sending to ``channel_id`` and/or ``channel_ids`` of the same tenant.

    Owner: ``owner_user_id`` (the rule covers that user's own alerts, in their timezone),
    ``care_team_id`` (the team's timezone), or neither (tenant-wide, UTC).  ``patient_id``
    narrows a team or tenant rule to one patient.  Raises ValueError for a channel of
    another tenant or no channel at all.
    """
    targets = [*([channel_id] if channel_id is not None else []), *channel_ids]
    if not targets:
        raise ValueError("a rule needs at least one channel")
    quiet_start, quiet_end = quiet_hours if quiet_hours is not None else (None, None)
    async with conn.transaction():
        rule_id: int = await conn.fetchval(
            "INSERT INTO notification_rules (tenant_id, name, min_severity, patient_id, owner_user_id, care_team_id,"
            " categories, metrics, quiet_start, quiet_end, cooldown, group_wait, escalate_after)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
            tenant_id,
            name,
            min_severity,
            patient_id,
            owner_user_id,
            care_team_id,
            categories,
            metrics,
            quiet_start,
            quiet_end,
            cooldown,
            group_wait,
            escalate_after,
        )
        for purpose, ids in (("notify", targets), ("escalate", list(escalation_channel_ids))):
            if not ids:
                continue
            added = await conn.fetchval(
                "WITH added AS (INSERT INTO notification_rule_channels (rule_id, channel_id, purpose)"
                "  SELECT $1, id, $3 FROM notification_channels WHERE id = ANY($2::bigint[]) AND tenant_id = $4"
                "  ON CONFLICT DO NOTHING RETURNING 1) SELECT count(*) FROM added",
                rule_id,
                ids,
                purpose,
                tenant_id,
            )
            if added != len(set(ids)):
                raise ValueError(f"rule {name!r}: every channel must belong to tenant {tenant_id}")
    return rule_id


@dataclass(frozen=True, slots=True)
class RuleRow:
    """A rule as the API shows it, with its channel ids by purpose."""

    id: int
    tenant_id: int
    name: str
    enabled: bool
    min_severity: str
    patient_id: int | None
    owner_user_id: int | None
    care_team_id: int | None
    categories: list[str] | None
    metrics: list[str] | None
    quiet_start: time | None
    quiet_end: time | None
    cooldown: timedelta
    group_wait: timedelta
    escalate_after: timedelta | None
    created_at: datetime
    channel_ids: list[int]
    escalation_channel_ids: list[int]


# Columns update_rule may set, as create_rule names them.
RULE_COLUMNS = frozenset(
    {"name", "enabled", "min_severity", "patient_id", "owner_user_id", "care_team_id", "categories", "metrics",
     "quiet_start", "quiet_end", "cooldown", "group_wait", "escalate_after"}
)  # fmt: skip
_RULE = (
    "SELECT r.id, r.tenant_id, r.name, r.enabled, r.min_severity, r.patient_id, r.owner_user_id, r.care_team_id,"
    " r.categories, r.metrics, r.quiet_start, r.quiet_end, r.cooldown, r.group_wait, r.escalate_after, r.created_at,"
    " coalesce(array_agg(rc.channel_id ORDER BY rc.channel_id) FILTER (WHERE rc.purpose = 'notify'), '{}')"
    "   AS channel_ids,"
    " coalesce(array_agg(rc.channel_id ORDER BY rc.channel_id) FILTER (WHERE rc.purpose = 'escalate'), '{}')"
    "   AS escalation_channel_ids"
    " FROM notification_rules r LEFT JOIN notification_rule_channels rc ON rc.rule_id = r.id"
)


async def get_rule(conn: asyncpg.Connection, tenant_id: int, rule_id: int) -> RuleRow | None:
    row = await conn.fetchrow(_RULE + " WHERE r.id = $1 AND r.tenant_id = $2 GROUP BY r.id", rule_id, tenant_id)
    return RuleRow(**dict(row)) if row else None


async def rule_page(conn: asyncpg.Connection, tenant_id: int, after_id: int, limit: int) -> list[RuleRow]:
    """Up to ``limit`` of the tenant's rules with ids above ``after_id``, in id order."""
    rows = await conn.fetch(
        _RULE + " WHERE r.tenant_id = $1 AND r.id > $2 GROUP BY r.id ORDER BY r.id LIMIT $3", tenant_id, after_id, limit
    )
    return [RuleRow(**dict(r)) for r in rows]


async def update_rule(
    conn: asyncpg.Connection,
    tenant_id: int,
    rule_id: int,
    columns: dict[str, Any],
    *,
    channel_ids: Sequence[int] | None = None,
    escalation_channel_ids: Sequence[int] | None = None,
) -> bool:
    """Set ``columns`` (names from RULE_COLUMNS) and replace the channels given (None keeps
    them), in one transaction.  False when the tenant has no such rule.  Raises ValueError for
    an unknown column, a channel of another tenant or no notify channel left; the database's
    checks (asyncpg.CheckViolationError) guard the rest."""
    unknown = set(columns) - RULE_COLUMNS
    if unknown:
        raise ValueError(f"unknown rule column(s) {', '.join(sorted(unknown))}")
    names = sorted(columns)
    assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(names, start=3))
    async with conn.transaction():
        found = await conn.fetchval(
            f"UPDATE notification_rules SET {assignments or 'id = id'} WHERE id = $1 AND tenant_id = $2 RETURNING id",
            rule_id,
            tenant_id,
            *(columns[n] for n in names),
        )
        if found is None:
            return False
        for purpose, ids in (("notify", channel_ids), ("escalate", escalation_channel_ids)):
            if ids is None:
                continue
            if purpose == "notify" and not ids:
                raise ValueError("a rule needs at least one channel")
            if await tenant_channels(conn, tenant_id, ids) != set(ids):
                raise ValueError(f"every channel must belong to tenant {tenant_id}")
            await conn.execute(
                "DELETE FROM notification_rule_channels WHERE rule_id = $1 AND purpose = $2", rule_id, purpose
            )
            await conn.execute(
                "INSERT INTO notification_rule_channels (rule_id, channel_id, purpose)"
                " SELECT $1, unnest($2::bigint[]), $3 ON CONFLICT DO NOTHING",
                rule_id,
                sorted(set(ids)),
                purpose,
            )
    return True


async def delete_rule(conn: asyncpg.Connection, tenant_id: int, rule_id: int) -> bool:
    found = await conn.fetchval(
        "DELETE FROM notification_rules WHERE id = $1 AND tenant_id = $2 RETURNING id", rule_id, tenant_id
    )
    return found is not None
