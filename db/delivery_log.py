"""The delivery log's writes: one notification_logs row per attempt or routing decision.

Every write takes the alert's row lock, so "is this (alert, channel) settled?" and the insert
that follows are one atomic step however many workers route the alert at once.  Settled means
the channel has the alert (delivered), must never get it (suppressed, pruned), or refused it
for good (failed with a permanent or auth error class); only then is nothing left to try.

The lock does not cover a cooldown: two alerts of one patient and key are two rows.  A batch's
claim (``start_each``) therefore also claims the cooldown of each rule that has one, for the
patient and key, and refuses when another alert claimed it since routing read the evidence; a
group's (``start_attempts``) claims it for every key its message carries, or starts nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import asyncpg

from db.alerts import SEVERITIES, Alert

SETTLED = (
    "(l.status IN ('delivered', 'suppressed', 'pruned')"
    " OR (l.status = 'failed' AND l.error_class IN ('permanent', 'auth')))"
)
# Final statuses routing writes without a send; 'deferred' is not final, it has a due_at.
DECIDED = ("suppressed", "deferred")


@dataclass(frozen=True, slots=True)
class Attempt:
    """What ``start_attempts`` found: new attempts to make (alert id → log row id; the lead
    alert first), an attempt of the lead still in flight (and how long its lease runs), or
    neither because the channel already has the lead alert.  ``cooldown_taken``: nothing started,
    because another alert claimed the rule's cooldown since routing read it; the alert must be
    decided again."""

    log_ids: dict[int, int] = field(default_factory=dict)
    in_flight_for: timedelta | None = None
    cooldown_taken: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an attempt ended, as the log stores it.  ``detail`` is safe to show: no secrets."""

    status: str
    error_class: str | None = None
    detail: str | None = None
    http_status: int | None = None
    latency_ms: int | None = None
    retry_after_s: float | None = None


async def _lock(conn: asyncpg.Connection, alert_ids: Sequence[int]) -> None:
    # In id order, so two workers locking overlapping groups cannot deadlock.
    await conn.execute("SELECT 1 FROM alerts WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE", list(alert_ids))


async def _state(
    conn: asyncpg.Connection, alert_id: int, channel_id: int, purpose: str, lease: timedelta
) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        f"SELECT coalesce(bool_or({SETTLED}), false) AS settled,"
        " max(l.created_at) FILTER (WHERE l.status = 'sending' AND l.created_at > now() - $4::interval)"
        "   + $4::interval - now() AS lease_left"
        " FROM notification_logs l WHERE l.alert_id = $1 AND l.channel_id = $2 AND l.purpose = $3",
        alert_id,
        channel_id,
        purpose,
        lease,
    )
    return row


async def _insert(
    conn: asyncpg.Connection,
    alert_id: int,
    channel_id: int,
    purpose: str,
    rule_id: int | None,
    status: str,
    *,
    detail: str | None = None,
    send_id: int | None = None,
    due_at: datetime | None = None,
    close_abandoned: bool = True,
) -> int:
    # An older 'sending' row was left by a worker that died mid-send: close it as failed first.
    if close_abandoned:
        await conn.execute(
            "UPDATE notification_logs SET status = 'failed', error_class = 'transient',"
            " detail = 'abandoned: the worker stopped mid-send', finished_at = now()"
            " WHERE alert_id = $1 AND channel_id = $2 AND purpose = $3 AND status = 'sending'",
            alert_id,
            channel_id,
            purpose,
        )
    log_id: int = await conn.fetchval(
        "INSERT INTO notification_logs (alert_id, channel_id, purpose, rule_id, attempt, status, detail, send_id,"
        " due_at, finished_at)"
        " SELECT $1, $2, $3, $4, coalesce(max(attempt), 0) + 1, $5, $6, $7, $8,"
        "   CASE WHEN $5 = 'sending' THEN NULL ELSE now() END"
        " FROM notification_logs WHERE alert_id = $1 AND channel_id = $2 AND purpose = $3 RETURNING id",
        alert_id,
        channel_id,
        purpose,
        rule_id,
        status,
        detail,
        send_id,
        due_at,
    )
    return log_id


async def start_attempts(
    conn: asyncpg.Connection,
    alert_id: int,
    channel_id: int,
    *,
    lease: timedelta,
    rule_id: int | None = None,
    purpose: str = "notify",
    also: Sequence[int] = (),
    cooldowns: Mapping[tuple[int, int], int | None] | None = None,
) -> Attempt:
    """Log a new 'sending' attempt of ``alert_id`` on the channel, unless the channel is
    settled for it or another worker's attempt is in flight (younger than ``lease``).

    ``also`` are alerts to send in the same message (a group): each joins with an attempt of
    its own, sharing the lead row's id as ``send_id``, unless it is settled or in flight.

    ``cooldowns``: as for ``start_each``, for the lead and each of ``also``.  The message is the
    cooldown's evidence for every key it carries, so the attempts start only if each of those
    keys is claimed; else none does (nor any claim), and the Attempt is ``cooldown_taken``.
    """
    try:
        async with conn.transaction():
            await _lock(conn, [alert_id, *also])
            lead = await _state(conn, alert_id, channel_id, purpose, lease)
            if lead["settled"]:
                return Attempt()
            if lead["lease_left"] is not None:
                return Attempt(in_flight_for=lead["lease_left"])
            lead_id = await _insert(conn, alert_id, channel_id, purpose, rule_id, "sending")
            await conn.execute("UPDATE notification_logs SET send_id = id WHERE id = $1", lead_id)
            log_ids = {alert_id: lead_id}
            for other in also:
                state = await _state(conn, other, channel_id, purpose, lease)
                if not state["settled"] and state["lease_left"] is None:
                    log_ids[other] = await _insert(
                        conn, other, channel_id, purpose, rule_id, "sending", send_id=lead_id
                    )
            if cooldowns and not await conn.fetchval(
                _CLAIM_GROUP, list(log_ids.values()), *_seen(cooldowns), list(SEVERITIES)
            ):
                raise _CooldownTaken
            return Attempt(log_ids)
    except _CooldownTaken:
        return Attempt(cooldown_taken=True)


class _CooldownTaken(Exception):
    """Leaves ``start_attempts``' transaction, undoing its attempts and the claims it made."""


# Starts the lead attempt on each (alert, channel, rule) in one statement: the alerts' row locks
# (in id order, so two workers claiming overlapping sets cannot deadlock), each channel's state,
# the close of an abandoned attempt and the insert, with send_id = id from one nextval.
#
# One statement has one snapshot, taken before it waits for the alerts' locks, so it may miss an
# attempt another worker committed meanwhile.  The attempt number guards that: attempts of an
# (alert, channel, purpose) are numbered 1, 2, 3... by max + 1 under a unique key, so a row this
# snapshot misses holds exactly the number it would take.  The insert then fails on the key,
# and ``start_each`` runs the statement again with a new snapshot, which sees the other attempt.
_START_HEAD = (
    "WITH want AS (SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) WITH ORDINALITY"
    "   AS w(alert_id, channel_id, rule_id, n)),"
    " locked AS MATERIALIZED (SELECT id, user_id, coalesce(metric, category) AS key, severity FROM alerts"
    "   WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE),"
    " state AS MATERIALIZED (SELECT w.n, w.alert_id, w.channel_id, w.rule_id, locked.user_id, locked.key,"
    "   locked.severity, s.* FROM want w JOIN locked ON locked.id = w.alert_id CROSS JOIN LATERAL ("
    f"   SELECT coalesce(bool_or({SETTLED}), false) AS settled,"
    "     max(l.created_at) FILTER (WHERE l.status = 'sending' AND l.created_at > now() - $5::interval)"
    "       + $5::interval - now() AS lease_left,"
    "     coalesce(max(l.attempt), 0) AS attempts, array_agg(l.id) FILTER (WHERE l.status = 'sending') AS sending"
    "   FROM notification_logs l WHERE l.alert_id = w.alert_id AND l.channel_id = w.channel_id AND l.purpose = $4) s),"
    # Ids in the order asked: the sort runs below the nextval.
    " ready AS MATERIALIZED (SELECT st.*, nextval(pg_get_serial_sequence('notification_logs', 'id')) AS log_id"
    "   FROM (SELECT * FROM state ORDER BY n) st WHERE NOT st.settled AND st.lease_left IS NULL),"
)


# The cooldown has the same blind spot, between two alerts of one patient and key that two
# workers route at once: each read no recent send, and their alerts' locks do not meet.  Reading
# the evidence again here would see no more, and an advisory lock would make the second wait but
# not see.  So an attempt under a rule with a cooldown also claims it for the patient and key
# (cooldown_claims), only while the claim is still the one routing read (``seen``; or is the
# alert's own, or a less severe alert's).  ON CONFLICT waits for a claim in flight and judges
# the latest committed one, whatever the snapshot: the second worker finds the claim changed
# and starts nothing.  Claims are taken in key order, so two workers cannot deadlock on them.
def _claim_sql(seen: str, severities: str) -> str:
    """Two CTEs over a CTE ``ready`` of attempts about to start (alert_id, rule_id, user_id, key,
    severity, log_id): ``seen``, the claims routing read (``seen``: arrays of alert ids, rule ids
    and log ids), and ``taken``, the claims made (alert id, rule id).  One attempt claims each
    patient, rule and key: the most severe of a group's, which its message is the evidence for."""
    return (
        f" seen AS (SELECT * FROM unnest({seen}) AS c(alert_id, rule_id, log_id)),"
        " taken AS (INSERT INTO cooldown_claims AS c (user_id, rule_id, key, alert_id, severity, log_id)"
        "   SELECT DISTINCT ON (r.user_id, r.rule_id, r.key) r.user_id, r.rule_id, r.key, r.alert_id, r.severity,"
        "   r.log_id FROM ready r JOIN seen USING (alert_id, rule_id) ORDER BY r.user_id, r.rule_id, r.key,"
        f"   array_position({severities}::text[], r.severity) DESC, r.log_id"
        "   ON CONFLICT (user_id, rule_id, key) DO UPDATE"
        "   SET alert_id = excluded.alert_id, severity = excluded.severity, log_id = excluded.log_id"
        "   WHERE c.log_id = (SELECT s.log_id FROM seen s WHERE s.alert_id = excluded.alert_id"
        "     AND s.rule_id = excluded.rule_id) OR c.alert_id = excluded.alert_id"
        f"     OR array_position({severities}::text[], excluded.severity)"
        f"       > array_position({severities}::text[], c.severity)"
        "   RETURNING c.alert_id, c.rule_id),"
    )


_CLAIM_COOLDOWNS = _claim_sql(seen="$6::bigint[], $7::bigint[], $8::bigint[]", severities="$9") + (
    " go AS MATERIALIZED (SELECT r.* FROM ready r"
    "   WHERE NOT EXISTS (SELECT 1 FROM seen s WHERE s.alert_id = r.alert_id AND s.rule_id = r.rule_id)"
    "   OR EXISTS (SELECT 1 FROM taken t WHERE t.alert_id = r.alert_id AND t.rule_id = r.rule_id)),"
)
_START_TAIL = (
    # An older 'sending' row was left by a worker that died mid-send: close it as failed, by the ids
    # the state found.  Rare, so the first condition (evaluated once) skips the scan when there is
    # none: a plan made once may have picked any index for it, a whole index's scan included.
    " closed AS (UPDATE notification_logs l SET status = 'failed', error_class = 'transient',"
    "   detail = 'abandoned: the worker stopped mid-send', finished_at = now()"
    "   WHERE (SELECT bool_or(go.sending IS NOT NULL) FROM go)"
    "   AND l.id = ANY(ARRAY(SELECT unnest(go.sending) FROM go)) AND l.status = 'sending'),"
    " made AS (INSERT INTO notification_logs (id, send_id, alert_id, channel_id, purpose, rule_id, attempt, status)"
    "   SELECT log_id, log_id, alert_id, channel_id, $4, rule_id, attempts + 1, 'sending' FROM go)"
    " SELECT st.alert_id, st.channel_id, st.settled, st.lease_left, go.log_id"
    " FROM state st LEFT JOIN go USING (alert_id, channel_id)"
)
_START_EACH = _START_HEAD + " go AS (SELECT * FROM ready)," + _START_TAIL
# A batch with a cooldown among its rules: a statement of its own, so that the others pay nothing
# for the claims (a plan's extra nodes cost about 5 µs an alert even with no claim to make).
_START_CLAIMING = _START_HEAD + _CLAIM_COOLDOWNS + _START_TAIL
# A group's claim, in ``start_attempts``' transaction once its attempts are logged (the row locks
# taken, as in ``start_each``): the same claim, over those rows, for each key the message carries.
# True when every one of those keys was claimed.
_CLAIM_GROUP = (
    "WITH ready AS (SELECT l.alert_id, l.rule_id, a.user_id, coalesce(a.metric, a.category) AS key, a.severity,"
    "   l.id AS log_id FROM notification_logs l JOIN alerts a ON a.id = l.alert_id WHERE l.id = ANY($1::bigint[])),"
    + _claim_sql(seen="$2::bigint[], $3::bigint[], $4::bigint[]", severities="$5")
    + " keys AS (SELECT DISTINCT r.user_id, r.rule_id, r.key FROM ready r JOIN seen USING (alert_id, rule_id))"
    " SELECT (SELECT count(*) FROM taken) = (SELECT count(*) FROM keys)"
)
# Statements that lost the race for an attempt number in a row; each loss means another worker
# logged an attempt, so a few suffice unless something is badly wrong.
_START_TRIES = 5


async def start_each(
    conn: asyncpg.Connection,
    targets: Sequence[tuple[int, int, int | None]],
    *,
    lease: timedelta,
    purpose: str = "notify",
    cooldowns: Mapping[tuple[int, int], int | None] | None = None,
) -> dict[tuple[int, int], Attempt]:
    """``start_attempts`` without a group for each (alert id, channel id, rule id), all in one
    statement (one round trip, one commit): (alert id, channel id) → its Attempt.
    Must run outside a transaction: a lost race is retried with a fresh snapshot.

    ``cooldowns``: (alert id, rule id) → the rule's claim of its cooldown on the alert's patient
    and key that routing read (``db.routing.Routing.claims``; None: no claim), for each rule with
    a cooldown.  Its attempts start only if the claim is still that one, the alert's own or a less
    severe alert's, and then take it; else they are ``cooldown_taken``.
    """
    columns = [list(column) for column in zip(*targets, strict=True)] if targets else [[], [], []]
    statement, args = _START_EACH, [*columns, purpose, lease]
    if cooldowns:
        statement, args = _START_CLAIMING, [*args, *_seen(cooldowns), list(SEVERITIES)]
    for tries_left in range(_START_TRIES - 1, -1, -1):
        try:
            rows = await conn.fetch(statement, *args)
            break
        except asyncpg.UniqueViolationError:
            if not tries_left:
                raise
    found = {(r["alert_id"], r["channel_id"]): r for r in rows}
    attempts = {}
    for alert_id, channel_id, _ in targets:
        row = found.get((alert_id, channel_id))
        if row is None or row["settled"]:  # no row: the alert is gone
            attempts[alert_id, channel_id] = Attempt()
        elif row["lease_left"] is not None:
            attempts[alert_id, channel_id] = Attempt(in_flight_for=row["lease_left"])
        elif row["log_id"] is None:
            attempts[alert_id, channel_id] = Attempt(cooldown_taken=True)
        else:
            attempts[alert_id, channel_id] = Attempt({alert_id: row["log_id"]})
    return attempts


def _seen(cooldowns: Mapping[tuple[int, int], int | None]) -> list[list[int | None]]:
    # The claims' parameters: alert ids, rule ids, and the log ids of the claims routing read.
    return [[a for a, _ in cooldowns], [r for _, r in cooldowns], list(cooldowns.values())]


async def start_many(
    conn: asyncpg.Connection,
    alert_id: int,
    targets: Sequence[tuple[int, int | None]],
    *,
    lease: timedelta,
    purpose: str = "notify",
) -> dict[int, Attempt]:
    """``start_each`` for one alert on several (channel id, rule id): channel id → its Attempt."""
    found = await start_each(conn, [(alert_id, c, r) for c, r in targets], lease=lease, purpose=purpose)
    return {channel_id: attempt for (_, channel_id), attempt in found.items()}


@dataclass(frozen=True, slots=True)
class Routed:
    """``alerts.mark_routed``'s arguments, to write with the last attempt's outcome."""

    alert_id: int
    at: datetime | None = None
    escalate_at: datetime | None = None


# Each attempt's outcome, and the alerts whose routing they complete marked routed
# (db.alerts.mark_routed), in one statement: one commit for a whole batch of sends.  The ``= ANY``
# conditions give each UPDATE an index key: joined to an unnest alone, a plan made once (db.pool)
# scanned every alert, or the whole log, on each call.
_FINISH_EACH = (
    "WITH o AS (SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::int[], $6::int[],"
    "   $7::float8[]) AS o(id, status, error_class, detail, http_status, latency_ms, retry_after_s)),"
    " finished AS (UPDATE notification_logs l SET status = o.status, error_class = o.error_class,"
    "   detail = o.detail, http_status = o.http_status, latency_ms = o.latency_ms, retry_after_s = o.retry_after_s,"
    "   finished_at = now() FROM o WHERE l.id = ANY($1::bigint[]) AND l.id = o.id)"
    " UPDATE alerts a SET routed_at = coalesce(r.at, now()), route_after = NULL, escalate_at = r.escalate_at"
    " FROM unnest($8::bigint[], $9::timestamptz[], $10::timestamptz[]) AS r(id, at, escalate_at)"
    " WHERE a.id = ANY($8::bigint[]) AND a.id = r.id AND a.routed_at IS NULL"
)


async def finish_each(
    conn: asyncpg.Connection, finished: Sequence[tuple[Sequence[int], Outcome]], routed: Sequence[Routed] = ()
) -> None:
    """Close the attempts of several sends, each (log ids, outcome), and mark the ``routed``
    alerts routed, atomically (their routing is done once these sends are logged)."""
    rows = [(log_id, o) for log_ids, o in finished for log_id in log_ids]
    await conn.execute(
        _FINISH_EACH,
        [i for i, _ in rows], [o.status for _, o in rows], [o.error_class for _, o in rows],
        [o.detail for _, o in rows], [o.http_status for _, o in rows], [o.latency_ms for _, o in rows],
        [o.retry_after_s for _, o in rows],
        [r.alert_id for r in routed], [r.at for r in routed], [r.escalate_at for r in routed],
    )  # fmt: skip


async def finish_attempts(
    conn: asyncpg.Connection, log_ids: Sequence[int], outcome: Outcome, *, routed: Routed | None = None
) -> None:
    """Close the attempts of one send with its outcome; with ``routed``, also mark the alert
    routed, atomically (routing is done once this send is logged)."""
    await finish_each(conn, [(log_ids, outcome)], [routed] if routed is not None else [])


async def finish_attempt(conn: asyncpg.Connection, log_id: int, status: str, detail: str | None) -> None:
    await finish_attempts(conn, [log_id], Outcome(status, detail=detail))


async def record_decision(
    conn: asyncpg.Connection,
    alert_id: int,
    channel_id: int,
    status: str,
    detail: str,
    *,
    rule_id: int | None = None,
    due_at: datetime | None = None,
    purpose: str = "notify",
) -> bool:
    """Log routing's own outcome for the channel: 'suppressed', or 'deferred' until ``due_at``.

    Nothing is written when the channel is settled for the alert, or when the same deferral is
    logged already, so a replayed message adds no rows.  Returns whether a row was written.
    """
    if status not in DECIDED:
        raise ValueError(f"not a routing decision: {status!r}")
    async with conn.transaction():
        await _lock(conn, [alert_id])
        state = await _state(conn, alert_id, channel_id, purpose, timedelta(0))
        if state["settled"]:
            return False
        if status == "deferred" and await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM notification_logs WHERE alert_id = $1 AND channel_id = $2"
            " AND purpose = $3 AND status = 'deferred' AND due_at = $4)",
            alert_id,
            channel_id,
            purpose,
            due_at,
        ):
            return False
        # A send in flight is left alone: its own worker closes it.
        await _insert(
            conn, alert_id, channel_id, purpose, rule_id, status, detail=detail, due_at=due_at, close_abandoned=False
        )
        return True


@dataclass(frozen=True, slots=True)
class Cooldown:
    """The cooldown's evidence: a rule's latest delivery of another alert of the patient and key,
    or (``finished_at`` None) a send of one that is in flight now."""

    alert_id: int
    finished_at: datetime | None


def cooldown_sql(*, rule_id: str, since: str, severities: str, enabled: str = "true") -> str:
    """A subquery over alias ``a`` (the alert): the latest delivery by the rule since ``since``
    of another alert of ``a``'s patient with the same key (the metric, else the category), at
    least as severe.  Columns ``alert_id``, ``finished_at``; no row when ``enabled`` is false.

    It starts from the patient's alerts with that key (alerts_user_cooldown_key) and probes each
    one's delivered rows (notification_logs_alert_sent), one LIMIT 1 lateral per alert: never the
    rule's whole history, so its cost does not grow with the rule's traffic (migration 0015).
    """
    return (
        "(SELECT o.id AS alert_id, s.finished_at FROM alerts o CROSS JOIN LATERAL ("
        "   SELECT l.finished_at FROM notification_logs l WHERE l.alert_id = o.id"
        f"   AND l.rule_id = {rule_id} AND l.status = 'delivered' AND l.purpose = 'notify' AND l.finished_at > {since}"
        "   ORDER BY l.finished_at DESC LIMIT 1) s"
        f" WHERE {enabled} AND o.user_id = a.user_id AND o.id <> a.id"
        "   AND coalesce(o.metric, o.category) = coalesce(a.metric, a.category)"
        f"   AND array_position({severities}::text[], o.severity)"
        f"     >= array_position({severities}::text[], a.severity)"
        " ORDER BY s.finished_at DESC LIMIT 1)"
    )


_LAST_SENT = (
    "SELECT cd.alert_id, cd.finished_at FROM (SELECT $3::bigint AS id, $4::bigint AS user_id, $5::text AS metric,"
    " $6::text AS category, $7::text AS severity) a"
    " CROSS JOIN LATERAL " + cooldown_sql(rule_id="$1::bigint", since="$2::timestamptz", severities="$8") + " cd"
)


async def last_sent(conn: asyncpg.Connection, rule_id: int, alert: Alert, since: datetime) -> Cooldown | None:
    """The latest delivery since ``since``, by the rule, of another alert of the same patient and
    metric (the category when there is no metric) at least as severe: the cooldown's evidence.
    Routing reads the same through db.routing.load; grouping asks here for each rider."""
    row = await conn.fetchrow(
        _LAST_SENT, rule_id, since, alert.id, alert.user_id, alert.metric, alert.category, alert.severity,
        list(SEVERITIES),
    )  # fmt: skip
    return Cooldown(row["alert_id"], row["finished_at"]) if row else None


async def give_up(conn: asyncpg.Connection, log_ids: Sequence[int]) -> None:
    """The retries are spent: a rate-limited or transiently failed attempt becomes the final
    'failed' (its error class still says why)."""
    await conn.execute(
        "UPDATE notification_logs SET status = 'failed',"
        " detail = concat_ws('; ', detail, 'no retries left') WHERE id = ANY($1::bigint[])"
        " AND status IN ('failed', 'rate_limited')",
        list(log_ids),
    )
