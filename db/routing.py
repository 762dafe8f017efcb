"""What routing reads: the rules that match an alert, each with the channels it notifies and
escalates to, and the other alerts a grouped message may carry.  Rules are written in
db/notification_rules.py.

``load_many`` reads everything routing decisions need in one round trip, for several alerts at
once: each alert, the silence and the critical alert that mute it, the matching rules with their
channels, and each rule's cooldown evidence with the claim of the cooldown that the send's claim
must still find (db.delivery_log.start_each).  Delivery speed is mostly round trips
(docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, time, timedelta

import asyncpg

from db.alerts import SELECT_ALERT, SEVERITIES, Alert
from db.delivery_log import SETTLED, Cooldown, cooldown_sql
from db.notification_channels import ChannelRow
from db.silences import inhibiting_sql, silencing_sql


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


@dataclass(frozen=True, slots=True)
class Routing:
    """An alert and what decides its routing now: ``silence_id`` (an active silence that
    matches it), ``inhibitor_id`` (a critical alert that mutes it), its matching rules in id
    order, ``cooldowns``: rule id → the send that holds it back (delivered, or in flight now), for
    rules in cooldown, and ``claims``: rule id → the log id of the attempt that last claimed the
    rule's cooldown on the alert's patient and key, for rules with a cooldown and such a claim."""

    alert: Alert
    silence_id: int | None
    inhibitor_id: int | None
    rules: tuple[Rule, ...]
    cooldowns: dict[int, Cooldown]
    claims: dict[int, int]


_ALERT_FIELDS = tuple(Alert.__dataclass_fields__)
# How long an attempt in flight counts as alive (channels.routing.ATTEMPT_LEASE, the default).
LEASE = timedelta(minutes=2)

# One row per matching rule (one row with NULL rule columns when none matches).  A rule's
# channels come as parallel arrays in id order; the alert's columns repeat on every row.
_LOAD = (
    "SELECT a.*, " + silencing_sql("$3::timestamptz") + " AS silence_id, " + inhibiting_sql("$4") + " AS inhibitor_id,"
    " r.id AS rule_id, r.tenant_id AS rule_tenant_id, r.name AS rule_name,"
    " coalesce(owner.timezone, team.timezone, 'UTC') AS rule_timezone, r.quiet_start, r.quiet_end, r.cooldown,"
    " r.group_wait, r.escalate_after, ch.ids AS channel_ids, ch.purposes, ch.kinds, ch.labels, ch.configs,"
    " cd.alert_id AS cooldown_alert_id, cd.finished_at AS cooldown_sent_at, fl.alert_id AS in_flight_alert_id,"
    # The rule's latest claim of its cooldown on the patient and key, which the claim of a send
    # must still find (db.delivery_log.start_each).
    " (SELECT cc.log_id FROM cooldown_claims cc WHERE r.cooldown > interval '0' AND cc.rule_id = r.id"
    "   AND cc.user_id = a.user_id AND cc.key = coalesce(a.metric, a.category)) AS cooldown_claim"
    f" FROM ({SELECT_ALERT} WHERE a.id = ANY($1::bigint[])) a"
    " LEFT JOIN notification_rules r ON "
    + _MATCHES.replace("u.tenant_id", "a.tenant_id")
    + " LEFT JOIN users owner ON owner.id = r.owner_user_id"
    " LEFT JOIN care_teams team ON team.id = r.care_team_id"
    " LEFT JOIN LATERAL (SELECT array_agg(c.id ORDER BY c.id, rc.purpose) AS ids,"
    "   array_agg(rc.purpose ORDER BY c.id, rc.purpose) AS purposes,"
    "   array_agg(c.kind ORDER BY c.id, rc.purpose) AS kinds,"
    "   array_agg(c.label ORDER BY c.id, rc.purpose) AS labels,"
    "   array_agg(c.config_sealed ORDER BY c.id, rc.purpose) AS configs"
    "   FROM notification_rule_channels rc JOIN notification_channels c ON c.id = rc.channel_id"
    "   WHERE rc.rule_id = r.id AND c.enabled AND c.tenant_id = a.tenant_id) ch ON true"
    " LEFT JOIN LATERAL "
    + cooldown_sql(
        rule_id="r.id", since="$3::timestamptz - r.cooldown", severities="$2", enabled="r.cooldown > interval '0'"
    )
    + " cd ON true"
    # A send of another alert of the patient and key that is in flight now (younger than the
    # lease): once it is delivered, it is the cooldown's evidence; until then the alert waits.
    " LEFT JOIN LATERAL (SELECT o.id AS alert_id FROM alerts o JOIN notification_logs l ON l.alert_id = o.id"
    "   WHERE cd.alert_id IS NULL AND r.cooldown > interval '0' AND o.user_id = a.user_id AND o.id <> a.id"
    "   AND coalesce(o.metric, o.category) = coalesce(a.metric, a.category)"
    "   AND array_position($2::text[], o.severity) >= array_position($2::text[], a.severity)"
    "   AND l.rule_id = r.id AND l.purpose = 'notify' AND l.status = 'sending'"
    "   AND l.created_at > now() - $5::interval LIMIT 1) fl ON true"
    " ORDER BY a.id, r.id"
)


async def load(
    conn: asyncpg.Connection, alert_id: int, now: datetime, inhibit_window: timedelta, lease: timedelta = LEASE
) -> Routing | None:
    """The alert and what decides its routing at ``now`` (one statement), or None when it is gone."""
    return (await load_many(conn, [alert_id], now, inhibit_window, lease)).get(alert_id)


async def load_many(
    conn: asyncpg.Connection, alert_ids: list[int], now: datetime, inhibit_window: timedelta, lease: timedelta = LEASE
) -> dict[int, Routing]:
    """Each alert that exists among ``alert_ids``, with what decides its routing at ``now``, in
    one statement.  Rules are those of ``rules_for``; a rule's cooldown evidence is
    ``delivery_log.last_sent``'s, else a send in flight (an attempt younger than ``lease``), and
    its claim is the one in cooldown_claims now."""
    rows = await conn.fetch(_LOAD, alert_ids, list(SEVERITIES), now, inhibit_window, lease)
    found: dict[int, Routing] = {}
    for alert_rows in _by_alert(rows):
        first = alert_rows[0]
        alert = Alert(**{name: first[name] for name in _ALERT_FIELDS})
        rules, cooldowns, claims = [], {}, {}
        for row in alert_rows:
            if row["rule_id"] is None:
                continue
            channels = zip(row["channel_ids"] or (), row["purposes"] or (), row["kinds"] or (), row["labels"] or (),
                           row["configs"] or (), strict=True)  # fmt: skip
            mine = [(purpose, ChannelRow(cid, alert.tenant_id, kind, label, sealed))
                    for cid, purpose, kind, label, sealed in channels]  # fmt: skip
            rule = Rule(
                row["rule_id"], row["rule_tenant_id"], row["rule_name"], row["rule_timezone"], row["quiet_start"],
                row["quiet_end"], row["cooldown"], row["group_wait"], row["escalate_after"],
                channels=tuple(c for p, c in mine if p == "notify"),
                escalation_channels=tuple(c for p, c in mine if p == "escalate"),
            )  # fmt: skip
            rules.append(rule)
            if row["cooldown_alert_id"] is not None:
                cooldowns[rule.id] = Cooldown(row["cooldown_alert_id"], row["cooldown_sent_at"])
            elif row["in_flight_alert_id"] is not None:
                cooldowns[rule.id] = Cooldown(row["in_flight_alert_id"], None)
            if row["cooldown_claim"] is not None:
                claims[rule.id] = row["cooldown_claim"]
        found[alert.id] = Routing(alert, first["silence_id"], first["inhibitor_id"], tuple(rules), cooldowns, claims)
    return found


def _by_alert(rows: list[asyncpg.Record]) -> list[list[asyncpg.Record]]:
    # The rows come in alert order: one run per alert.
    runs: list[list[asyncpg.Record]] = []
    for row in rows:
        if runs and runs[-1][0]["id"] == row["id"]:
            runs[-1].append(row)
        else:
            runs.append([row])
    return runs


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


async def cooldown_claims(conn: asyncpg.Connection, rule_id: int, user_id: int, keys: Iterable[str]) -> dict[str, int]:
    """The rule's claims of its cooldown on the patient's ``keys`` (key → the claiming attempt's
    log id), as ``load_many`` reads the alert's own: those of a group's riders."""
    rows = await conn.fetch(
        "SELECT key, log_id FROM cooldown_claims WHERE user_id = $1 AND rule_id = $2 AND key = ANY($3::text[])",
        user_id,
        rule_id,
        list(keys),
    )
    return {r["key"]: r["log_id"] for r in rows}


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
