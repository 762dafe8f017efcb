"""What routing reads: the rules that match an alert, each with the channels it notifies and
escalates to, and the other alerts a grouped message may carry.  Rules are written in
db/notification_rules.py."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta

import asyncpg

from db.alerts import SEVERITIES, Alert
from db.delivery_log import SETTLED
from db.notification_channels import ChannelRow


@dataclass(frozen=True, slots=True)
class Rule:
    """A matching rule with what routing needs: its owner's timezone and its channels."""

    id: int
    tenant_id: int
    name: str
    timezone: str
    quiet_start: time | None
    quiet_end: time | None
    cooldown: timedelta
    group_wait: timedelta
    escalate_after: timedelta | None
    channels: tuple[ChannelRow, ...] = ()
    escalation_channels: tuple[ChannelRow, ...] = ()


# Whether rule r matches alert a of user u; shared by rules_for and group_candidates.
_MATCHES = (
    "r.tenant_id = u.tenant_id AND r.enabled"
    " AND (r.patient_id IS NULL OR r.patient_id = a.user_id)"
    " AND (r.owner_user_id IS NULL OR r.owner_user_id = a.user_id)"
    " AND (r.categories IS NULL OR a.category = ANY (r.categories))"
    " AND (r.metrics IS NULL OR a.metric = ANY (r.metrics))"
    " AND array_position($2::text[], r.min_severity) <= array_position($2::text[], a.severity)"
)


async def rules_for(conn: asyncpg.Connection, alert: Alert) -> list[Rule]:
    """Enabled rules of the alert's tenant that match it, in id order, each with its enabled
    channels of the same tenant (a rule whose channels are all disabled comes with none)."""
    rows = await conn.fetch(
        "SELECT r.id, r.tenant_id, r.name, coalesce(owner.timezone, team.timezone, 'UTC') AS timezone,"
        " r.quiet_start, r.quiet_end, r.cooldown, r.group_wait, r.escalate_after"
        " FROM alerts a JOIN users u ON u.id = a.user_id"
        f" JOIN notification_rules r ON {_MATCHES}"
        " LEFT JOIN users owner ON owner.id = r.owner_user_id"
        " LEFT JOIN care_teams team ON team.id = r.care_team_id"
        " WHERE a.id = $1 ORDER BY r.id",
        alert.id,
        list(SEVERITIES),
    )
    if not rows:
        return []
    channels = await conn.fetch(
        "SELECT rc.rule_id, rc.purpose, c.id, c.tenant_id, c.kind, c.label, c.config_sealed"
        " FROM notification_rule_channels rc JOIN notification_channels c ON c.id = rc.channel_id"
        " WHERE rc.rule_id = ANY($1::bigint[]) AND c.enabled AND c.tenant_id = $2 ORDER BY c.id",
        [r["id"] for r in rows],
        alert.tenant_id,
    )
    found = []
    for row in rows:
        mine = [c for c in channels if c["rule_id"] == row["id"]]
        notify = tuple(_channel(c) for c in mine if c["purpose"] == "notify")
        escalate = tuple(_channel(c) for c in mine if c["purpose"] == "escalate")
        found.append(Rule(**dict(row), channels=notify, escalation_channels=escalate))
    return found


def _channel(row: asyncpg.Record) -> ChannelRow:
    return ChannelRow(row["id"], row["tenant_id"], row["kind"], row["label"], row["config_sealed"])


async def group_candidates(
    conn: asyncpg.Connection, rule_id: int, channel_id: int, lead: Alert, now: datetime, limit: int = 50
) -> list[int]:
    """Other unrouted alerts of the lead's patient, raised by ``now``, that the rule matches and
    that the channel has not got, nor is getting: the ones a grouped message may carry."""
    rows = await conn.fetch(
        "SELECT a.id FROM alerts a JOIN users u ON u.id = a.user_id"
        f" JOIN notification_rules r ON r.id = $3 AND {_MATCHES}"
        " WHERE a.user_id = $1 AND a.id <> $4 AND a.routed_at IS NULL AND a.created_at <= $5"
        "   AND NOT EXISTS (SELECT 1 FROM notification_logs l WHERE l.alert_id = a.id AND l.channel_id = $6"
        f"                  AND l.purpose = 'notify' AND ({SETTLED} OR l.status = 'sending'))"
        " ORDER BY a.id LIMIT $7",
        lead.user_id,
        list(SEVERITIES),
        rule_id,
        lead.id,
        now,
        channel_id,
        limit,
    )
    return [r["id"] for r in rows]
