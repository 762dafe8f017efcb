"""Routing on real Postgres (and the real worker for timers): rules and owners, quiet hours,
cooldown, grouping, escalation, silences and inhibition, retries, pruning, the delivery log."""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import dramatiq
import pytest

from channels import CHANNELS, TransientDeliveryError
from channels.base import Channel, Delivery, DeliveryStatus, Rendered
from channels.quiet import quiet_until
from channels.routing import escalate_alert, route_alert, send_test_message
from db import (
    alerts,
    deliveries,
    delivery_log,
    notification_channels,
    notification_rules,
    silences,
    sync_runs,
    tenants,
    users,
)
from db import pool as db_pool
from db.alerts import Alert, NewAlert
from pipeline import actors, runtime
from pipeline.reconciler import reconcile
from pipeline.sync import record_failure
from tests.helpers import eventually, make_patient

HR = "resting_heart_rate"
LONDON = ZoneInfo("Europe/London")


@dataclass
class Clinic:
    pool: asyncpg.Pool
    tenant_id: int
    user_id: int
    dir: Path

    async def channel(self, name: str, **config: Any) -> int:
        async with self.pool.acquire() as conn:
            return await notification_channels.create_channel(
                conn,
                runtime.current().keyring,
                tenant_id=self.tenant_id,
                kind=config.pop("kind", "console"),
                label=name,
                config=config or {"path": str(self.sink(name)), "stdout": False},
            )

    def sink(self, name: str) -> Path:
        return self.dir / f"{name}.jsonl"

    def sent(self, name: str) -> list[dict[str, Any]]:
        path = self.sink(name)
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    async def rule(self, channel_ids: list[int], **options: Any) -> int:
        async with self.pool.acquire() as conn:
            return await notification_rules.create_rule(
                conn, tenant_id=self.tenant_id, name=secrets.token_hex(3), channel_ids=channel_ids, **options
            )

    async def patient(self, name: str, timezone: str = "UTC") -> int:
        async with self.pool.acquire() as conn:
            return await tenants.ensure_user(conn, self.tenant_id, name.lower().replace(" ", "-"), name, timezone)

    async def alert(self, severity: str = "warning", metric: str | None = HR, **fields: Any) -> int:
        new = NewAlert(
            user_id=fields.pop("user_id", self.user_id),
            category=fields.pop("category", "clinical"),
            severity=severity,
            metric=metric,
            title=fields.pop("title", f"{metric} out of range"),
            body="a body",
            observed_value=None,
            threshold=None,
            recorded_at=None,
            dedupe_key=secrets.token_hex(8),
        )
        async with self.pool.acquire() as conn:
            found = await alerts.insert(conn, new)
        assert found is not None
        return found

    async def route(self, alert_id: int, **kwargs: Any) -> Any:
        return await route_alert(self.pool, runtime.current().keyring, alert_id, **kwargs)

    async def logs(self, alert_id: int) -> list[tuple[str, str, str]]:
        async with self.pool.acquire() as conn:
            rows = await deliveries.deliveries_for_alert(conn, alert_id)
        return [(r.channel_label, r.purpose, r.status) for r in rows]


@pytest.fixture
async def clinic(pool: asyncpg.Pool, tmp_path: Path) -> Clinic:
    slug = f"routing-{secrets.token_hex(4)}"
    async with pool.acquire() as conn:
        tenant_id = await tenants.ensure_tenant(conn, slug, "Routing clinic")
        user_id = await tenants.ensure_user(conn, tenant_id, "p1", "Pat One", "Europe/London")
    return Clinic(pool, tenant_id, user_id, tmp_path)


async def _alert_row(pool: asyncpg.Pool, alert_id: int) -> asyncpg.Record:
    return await pool.fetchrow("SELECT * FROM alerts WHERE id = $1", alert_id)


# -- rules and owners ---------------------------------------------------------------------------


async def test_rules_choose_channels_by_category_and_minimum_severity(clinic: Clinic) -> None:
    clinical = await clinic.channel("clinical")
    pager = await clinic.channel("pager")
    await clinic.rule([clinical], categories=["clinical"], min_severity="warning")
    await clinic.rule([pager], min_severity="critical")

    info = await clinic.alert("info")
    warning = await clinic.alert("warning", metric="spo2")
    critical = await clinic.alert("critical", metric=None, category="connection")
    for alert_id in (info, warning, critical):
        await clinic.route(alert_id)

    assert [a["alert_id"] for a in clinic.sent("clinical")] == [warning]
    assert [a["alert_id"] for a in clinic.sent("pager")] == [critical]
    assert await clinic.logs(info) == []
    assert (await _alert_row(clinic.pool, info))["routed_at"] is not None


async def test_a_patients_own_rule_covers_their_alerts_and_a_care_team_rule_every_patient(clinic: Clinic) -> None:
    other = await clinic.patient("Sam Two")
    mine = await clinic.channel("mine")
    team_channel = await clinic.channel("team")
    async with clinic.pool.acquire() as conn:
        team = await notification_rules.create_care_team(
            conn, tenant_id=clinic.tenant_id, name="Ward 3", timezone="UTC"
        )
    await clinic.rule([mine], owner_user_id=clinic.user_id)
    await clinic.rule([team_channel], care_team_id=team)

    own = await clinic.alert()
    theirs = await clinic.alert(user_id=other)
    await clinic.route(own)
    await clinic.route(theirs)

    assert [a["alert_id"] for a in clinic.sent("mine")] == [own]
    assert [a["alert_id"] for a in clinic.sent("team")] == [own, theirs]


async def test_a_rule_refuses_a_channel_of_another_tenant(clinic: Clinic, pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        elsewhere = await tenants.ensure_tenant(conn, f"other-{secrets.token_hex(3)}", "Other")
        foreign = await notification_channels.create_channel(
            conn, runtime.current().keyring, tenant_id=elsewhere, kind="console", label="x", config={}
        )
    with pytest.raises(ValueError, match="must belong to tenant"):
        await clinic.rule([foreign])


# -- quiet hours --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("local_now", "start", "end", "until"),
    [
        (datetime(2026, 1, 15, 23, 30), time(22), time(7), datetime(2026, 1, 16, 7)),
        (datetime(2026, 1, 16, 6, 59), time(22), time(7), datetime(2026, 1, 16, 7)),
        (datetime(2026, 1, 16, 7, 0), time(22), time(7), None),
        (datetime(2026, 1, 16, 21, 59), time(22), time(7), None),
        (datetime(2026, 1, 16, 13, 0), time(12), time(14), datetime(2026, 1, 16, 14)),
        (datetime(2026, 7, 16, 23, 0), time(22), time(7), datetime(2026, 7, 17, 7)),  # BST: 06:00 UTC
        (datetime(2026, 1, 16, 13, 0), time(9), time(9), None),
    ],
)
def test_quiet_hours_end_at_the_owners_local_end_time(
    local_now: datetime, start: time, end: time, until: datetime | None
) -> None:
    found = quiet_until(local_now.replace(tzinfo=LONDON), start, end, "Europe/London")
    assert found == (until.replace(tzinfo=LONDON).astimezone(UTC) if until else None)


async def test_quiet_hours_defer_a_warning_to_their_end_and_it_is_delivered_then(clinic: Clinic) -> None:
    channel = await clinic.channel("night")
    await clinic.rule([channel], owner_user_id=clinic.user_id, quiet_hours=(time(22), time(7)))
    alert_id = await clinic.alert()
    night = datetime(2026, 1, 15, 23, 30, tzinfo=LONDON)
    morning = datetime(2026, 1, 16, 7, tzinfo=LONDON)

    first = await clinic.route(alert_id, now=night)
    again = await clinic.route(alert_id, now=night + timedelta(minutes=15))

    assert first.deferred_until == again.deferred_until == morning
    assert await clinic.logs(alert_id) == [("night", "notify", "deferred")]
    assert clinic.sent("night") == []
    row = await _alert_row(clinic.pool, alert_id)
    assert row["routed_at"] is None and row["route_after"] == morning

    done = await clinic.route(alert_id, now=morning + timedelta(seconds=1))

    assert done.delivered == 1 and done.deferred_until is None
    assert await clinic.logs(alert_id) == [("night", "notify", "deferred"), ("night", "notify", "delivered")]
    assert [a["alert_id"] for a in clinic.sent("night")] == [alert_id]


async def test_a_critical_alert_bypasses_quiet_hours(clinic: Clinic) -> None:
    channel = await clinic.channel("night")
    await clinic.rule([channel], owner_user_id=clinic.user_id, quiet_hours=(time(22), time(7)))
    alert_id = await clinic.alert("critical")

    report = await clinic.route(alert_id, now=datetime(2026, 1, 15, 23, 30, tzinfo=LONDON))

    assert report.delivered == 1
    assert await clinic.logs(alert_id) == [("night", "notify", "delivered")]


async def test_a_deferred_alert_goes_out_by_a_delayed_message_when_quiet_hours_end(
    clinic: Clinic, worker: dramatiq.Worker
) -> None:
    channel = await clinic.channel("night")
    now = datetime.now(UTC)
    end = now + timedelta(seconds=4)
    quiet = ((now - timedelta(hours=1)).time(), end.time())
    async with clinic.pool.acquire() as conn:
        team = await notification_rules.create_care_team(conn, tenant_id=clinic.tenant_id, name="Night", timezone="UTC")
    await clinic.rule([channel], care_team_id=team, quiet_hours=quiet)
    alert_id = await clinic.alert()

    actors.notify.send(alert_id)

    async def delivered() -> list[Any]:
        # The log, not the sink: the sink has the message a moment before its row is finished.
        async with clinic.pool.acquire() as conn:
            rows = await deliveries.deliveries_for_alert(conn, alert_id)
        return rows if len(rows) > 1 and rows[-1].status != "sending" else []

    rows = await eventually(delivered, timeout=20, what="the deferred alert")
    assert [r.status for r in rows] == ["deferred", "delivered"]
    assert [a["alert_id"] for a in clinic.sent("night")] == [alert_id]
    assert rows[0].due_at is not None and rows[0].due_at == end.replace(microsecond=end.microsecond)
    assert rows[1].finished_at is not None and rows[1].finished_at >= rows[0].due_at


# -- cooldown, grouping, silences, inhibition ---------------------------------------------------


async def test_cooldown_suppresses_a_repeat_for_the_same_patient_rule_and_metric(clinic: Clinic) -> None:
    channel = await clinic.channel("ward")
    await clinic.rule([channel], cooldown=timedelta(minutes=60))
    first = await clinic.alert()
    repeat = await clinic.alert()
    other_metric = await clinic.alert(metric="spo2")

    for alert_id in (first, repeat, other_metric):
        await clinic.route(alert_id)

    assert [a["alert_id"] for a in clinic.sent("ward")] == [first, other_metric]
    async with clinic.pool.acquire() as conn:
        [row] = await deliveries.deliveries_for_alert(conn, repeat)
    assert row.status == "suppressed" and row.detail is not None and row.detail.startswith(f"cooldown: alert {first}")
    assert (await _alert_row(clinic.pool, repeat))["routed_at"] is not None


async def test_three_alerts_within_the_group_wait_go_out_as_one_message(clinic: Clinic) -> None:
    channel = await clinic.channel("ward")
    await clinic.rule([channel], group_wait=timedelta(seconds=30))
    ids = [await clinic.alert(metric=m) for m in (HR, "spo2", "hrv_rmssd")]
    now = datetime.now(UTC)

    waiting = await clinic.route(ids[0], now=now)
    assert waiting.deferred_until is not None and waiting.deferred_until > now
    assert await clinic.logs(ids[0]) == []

    later = now + timedelta(seconds=31)
    flushed = await clinic.route(ids[0], now=later)
    rest = [await clinic.route(alert_id, now=later) for alert_id in ids[1:]]

    [message] = clinic.sent("ward")
    assert message["title"] == "3 alerts for Pat One"
    assert message["alert_id"] == ids[0] and all(f"{m} out of range" in message["body"] for m in (HR, "spo2"))
    assert flushed.delivered == 1 and [r.skipped for r in rest] == [1, 1]
    rows = await clinic.pool.fetch(
        "SELECT alert_id, status, send_id FROM notification_logs WHERE alert_id = ANY($1) ORDER BY alert_id", ids
    )
    assert [(r["alert_id"], r["status"]) for r in rows] == [(i, "delivered") for i in ids]
    assert len({r["send_id"] for r in rows}) == 1
    unrouted = await clinic.pool.fetchval("SELECT count(*) FROM alerts WHERE id = ANY($1) AND routed_at IS NULL", ids)
    assert unrouted == 0


async def test_a_silence_suppresses_matching_alerts_until_it_ends(clinic: Clinic) -> None:
    channel = await clinic.channel("ward")
    await clinic.rule([channel], cooldown=timedelta(0))
    now = datetime.now(UTC)
    async with clinic.pool.acquire() as conn:
        silence = await silences.create(
            conn, tenant_id=clinic.tenant_id, patient_id=clinic.user_id, metric=HR, starts_at=now,
            ends_at=now + timedelta(hours=1),
            created_by="nurse@ward3", comment="known tachycardia, on beta blockers",
        )  # fmt: skip
    silenced = await clinic.alert()
    other = await clinic.alert(metric="spo2")
    after = await clinic.alert()

    await clinic.route(silenced, now=now)
    await clinic.route(other, now=now)
    await clinic.route(after, now=now + timedelta(hours=2))

    assert [a["alert_id"] for a in clinic.sent("ward")] == [other, after]
    assert await clinic.logs(silenced) == [("ward", "notify", "suppressed")]
    detail = await clinic.pool.fetchval("SELECT detail FROM notification_logs WHERE alert_id = $1", silenced)
    assert detail == f"silenced by silence {silence}"
    audited = await clinic.pool.fetchval(
        "SELECT count(*) FROM audit_events WHERE action = 'silence.created' AND subject_id = $1", silence
    )
    assert audited == 1


async def test_a_critical_alert_inhibits_warnings_on_the_same_patient_and_metric(clinic: Clinic) -> None:
    channel = await clinic.channel("ward")
    await clinic.rule([channel], cooldown=timedelta(0))
    critical = await clinic.alert("critical")
    warning = await clinic.alert("warning")
    elsewhere = await clinic.alert("warning", metric="spo2")

    for alert_id in (critical, warning, elsewhere):
        await clinic.route(alert_id)

    assert [a["alert_id"] for a in clinic.sent("ward")] == [critical, elsewhere]
    detail = await clinic.pool.fetchval("SELECT detail FROM notification_logs WHERE alert_id = $1", warning)
    assert detail == f"inhibited by critical alert {critical}"


# -- escalation ---------------------------------------------------------------------------------


async def test_an_unacknowledged_critical_alert_escalates(clinic: Clinic, worker: dramatiq.Worker) -> None:
    ward = await clinic.channel("ward")
    oncall = await clinic.channel("oncall")
    await clinic.rule([ward], escalation_channel_ids=[oncall], escalate_after=timedelta(seconds=1))
    alert_id = await clinic.alert("critical", title="SpO2 82 %")

    actors.notify.send(alert_id)

    async def escalated() -> list[Any]:
        return clinic.sent("oncall")

    [page] = await eventually(escalated, timeout=20, what="the escalation")
    assert page["alert_id"] == alert_id and page["title"] == "Escalated: SpO2 82 %"
    assert "Not acknowledged within 1 s" in page["body"]
    assert [a["alert_id"] for a in clinic.sent("ward")] == [alert_id]

    async def marked() -> bool:
        return (await _alert_row(clinic.pool, alert_id))["escalated_at"] is not None

    # The page reaches the sink before its outcome is logged; escalated_at is written after that.
    await eventually(marked, what="escalated_at")
    assert await clinic.logs(alert_id) == [("ward", "notify", "delivered"), ("oncall", "escalate", "delivered")]


async def test_an_acknowledged_alert_does_not_escalate(clinic: Clinic) -> None:
    ward = await clinic.channel("ward")
    oncall = await clinic.channel("oncall")
    await clinic.rule([ward], escalation_channel_ids=[oncall], escalate_after=timedelta(minutes=5))
    alert_id = await clinic.alert("critical")
    now = datetime.now(UTC)

    routed = await clinic.route(alert_id, now=now)
    assert routed.escalate_at == now + timedelta(minutes=5)
    async with clinic.pool.acquire() as conn:
        assert await alerts.acknowledge(conn, alert_id, "slack:U123") is True
        assert await alerts.acknowledge(conn, alert_id, "slack:U999") is False
    report = await escalate_alert(clinic.pool, runtime.current().keyring, alert_id, now=now + timedelta(minutes=6))

    assert report.sent == 0 and clinic.sent("oncall") == []
    row = await _alert_row(clinic.pool, alert_id)
    assert (row["status"], row["acknowledged_by"]) == ("acknowledged", "slack:U123")
    assert row["escalated_at"] is not None


async def test_escalation_waits_for_its_time_and_a_lost_timer_is_found_by_the_reconciler(
    clinic: Clinic, pool: asyncpg.Pool
) -> None:
    ward = await clinic.channel("ward")
    oncall = await clinic.channel("oncall")
    await clinic.rule([ward], escalation_channel_ids=[oncall], escalate_after=timedelta(minutes=5))
    alert_id = await clinic.alert("critical")
    now = datetime.now(UTC)
    await clinic.route(alert_id, now=now - timedelta(minutes=10))

    early = await escalate_alert(pool, runtime.current().keyring, alert_id, now=now - timedelta(minutes=8))
    assert early.sent == 0 and early.pending_until == now - timedelta(minutes=5)
    async with pool.acquire() as conn:
        assert alert_id in await alerts.escalations_due(conn, timedelta(seconds=30))
        # Stamped due again: the next pass leaves it alone.
        assert alert_id not in await alerts.escalations_due(conn, timedelta(seconds=30))


# -- retries, pruning, the log ------------------------------------------------------------------


async def test_a_retry_sends_again_only_to_the_channel_that_failed(clinic: Clinic) -> None:
    await clinic.channel("ok")
    blocked = clinic.dir / "blocked.jsonl"
    blocked.mkdir()  # appending to a directory fails: a transient outcome
    ok = await clinic.pool.fetchval("SELECT id FROM notification_channels WHERE tenant_id = $1", clinic.tenant_id)
    flaky = await clinic.channel("blocked")
    await clinic.rule([ok, flaky])
    alert_id = await clinic.alert()

    with pytest.raises(TransientDeliveryError):
        await clinic.route(alert_id)
    blocked.rmdir()
    report = await clinic.route(alert_id)

    assert (report.delivered, report.skipped) == (1, 1)
    assert [a["alert_id"] for a in clinic.sent("ok")] == [alert_id]
    assert [a["alert_id"] for a in clinic.sent("blocked")] == [alert_id]
    async with clinic.pool.acquire() as conn:
        rows = await deliveries.deliveries_for_alert(conn, alert_id)
    assert [(r.channel_label, r.attempt, r.status, r.error_class) for r in rows] == [
        ("ok", 1, "delivered", None),
        ("blocked", 1, "failed", "transient"),
        ("blocked", 2, "delivered", None),
    ]
    assert all(r.latency_ms is not None for r in rows)
    assert all(str(clinic.dir) not in repr(r) for r in rows), "the log holds a channel's config"


async def test_the_last_retry_gives_up_marks_the_attempt_failed_and_audits_it(clinic: Clinic) -> None:
    (clinic.dir / "blocked.jsonl").mkdir()
    flaky = await clinic.channel("blocked")
    await clinic.rule([flaky])
    alert_id = await clinic.alert()

    report = await clinic.route(alert_id, final=True)

    assert report.failed == 1
    row = await clinic.pool.fetchrow(
        "SELECT status, error_class, detail FROM notification_logs WHERE alert_id = $1", alert_id
    )
    assert (row["status"], row["error_class"]) == ("failed", "transient") and row["detail"].endswith("no retries left")
    audit = await clinic.pool.fetchval(
        "SELECT details FROM audit_events WHERE action = 'alert.delivery_failed' AND subject_id = $1", alert_id
    )
    assert audit["channel_id"] == flaky
    assert (await _alert_row(clinic.pool, alert_id))["routed_at"] is not None


class Plain(Channel):
    """A channel with no configuration that sends the alert as it is; subclasses answer."""

    @classmethod
    def parse_config(cls, raw: dict[str, Any]) -> Plain:
        return cls()

    def render(self, alert: Alert) -> Rendered:
        return Rendered(alert.title, alert.body, alert.severity, {})


class Vanished(Plain):
    """A destination that answers 410, as a Web Push service does for a dropped subscription."""

    kind = "vanished"

    async def send(self, message: Rendered) -> Delivery:
        return Delivery(DeliveryStatus.GONE, "vanished: 410 Gone", http_status=410)


async def test_a_gone_destination_is_pruned_and_its_channel_disabled(
    clinic: Clinic, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(CHANNELS, Vanished.kind, Vanished)
    gone = await clinic.channel("subscription", kind="vanished", endpoint="x")
    await clinic.rule([gone], cooldown=timedelta(0))
    first = await clinic.alert()
    second = await clinic.alert(metric="spo2")

    await clinic.route(first)
    await clinic.route(second)

    row = await clinic.pool.fetchrow("SELECT status, http_status FROM notification_logs WHERE alert_id = $1", first)
    assert (row["status"], row["http_status"]) == ("pruned", 410)
    channel = await clinic.pool.fetchrow(
        "SELECT enabled, disabled_reason FROM notification_channels WHERE id = $1", gone
    )
    assert channel["enabled"] is False and channel["disabled_reason"] == "destination gone: vanished: 410 Gone"
    assert await clinic.logs(second) == []


async def test_a_channel_test_sends_a_message_and_reports_the_outcome(clinic: Clinic) -> None:
    channel_id = await clinic.channel("desk")

    found = await send_test_message(clinic.pool, runtime.current().keyring, channel_id)

    assert found is not None and found[1].status is DeliveryStatus.DELIVERED
    [message] = clinic.sent("desk")
    assert message["title"] == "Test message from CareBeacon"
    assert await send_test_message(clinic.pool, runtime.current().keyring, 10**9) is None


# -- sync failures ------------------------------------------------------------------------------


async def test_three_failed_syncs_in_a_row_raise_exactly_one_alert(
    pool: asyncpg.Pool, worker: dramatiq.Worker, alert_file: Path
) -> None:
    _, user_id, connection_id, _ = await make_patient(
        pool, runtime.current().keyring, tenant=f"failing-{secrets.token_hex(3)}", alert_file=alert_file
    )

    async def fail_once() -> int:
        async with pool.acquire() as conn:
            run_id = await sync_runs.create(conn, connection_id, "scheduled")
        await record_failure(pool, run_id, "TransientSyncError: 503", final=True)
        return run_id

    async def connection_alerts() -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await pool.fetch(
            "SELECT id, dedupe_key FROM alerts WHERE user_id = $1 ORDER BY id", user_id
        )
        return rows

    first = await fail_once()
    await fail_once()
    assert await connection_alerts() == []
    await fail_once()
    await fail_once()

    [alert] = await connection_alerts()
    assert alert["dedupe_key"] == f"sync-failing:{connection_id}:{first}"

    async def delivered() -> list[Any]:
        return [json.loads(line) for line in alert_file.read_text().splitlines()] if alert_file.exists() else []

    [sent] = await eventually(delivered, what="the sync-failing alert")
    assert sent["title"] == "Simulator sync keeps failing" and sent["alert_id"] == alert["id"]


async def test_a_deferred_alert_waits_for_its_due_time_before_the_reconciler_resends_it(
    clinic: Clinic, pool: asyncpg.Pool
) -> None:
    channel = await clinic.channel("night")
    await clinic.rule([channel], quiet_hours=(time(0), time(23, 59, 59)))
    alert_id = await clinic.alert()
    await pool.execute("UPDATE alerts SET created_at = now() - interval '1 hour' WHERE id = $1", alert_id)
    report = await clinic.route(alert_id)
    assert report.deferred_until is not None

    async with pool.acquire() as conn:
        assert alert_id not in await alerts.unrouted(conn, timedelta(seconds=30))
    await pool.execute("UPDATE alerts SET route_after = now() - interval '1 hour' WHERE id = $1", alert_id)
    found = await reconcile(pool, runtime.current().settings)
    assert found.notifications >= 1


# -- cost per delivery --------------------------------------------------------------------------


async def test_a_delivery_to_one_channel_takes_three_statements_and_no_connection_during_the_send(
    clinic: Clinic,
) -> None:
    channel = await clinic.channel("ward")
    await clinic.rule([channel])
    warm_up, alert_id = await clinic.alert(metric="spo2"), await clinic.alert()
    statements: list[str] = []
    acquired = 0

    async def count(conn: asyncpg.Connection) -> None:
        nonlocal acquired
        acquired += 1

    # A pool with the worker pool's reset (db.pool: none), so every statement of the delivery,
    # and every acquire, is seen.
    counted = await _counting_pool(statements, max_size=2, setup=count)
    try:
        # The first use of a connection also asks for its settings and types: not per delivery.
        await route_alert(counted, runtime.current().keyring, warm_up)
        statements.clear()
        acquired = 0
        report = await route_alert(counted, runtime.current().keyring, alert_id)
    finally:
        await counted.close()

    assert report.delivered == 1 and [a["alert_id"] for a in clinic.sent("ward")] == [warm_up, alert_id]
    # The alert with its rules, silence, inhibition and cooldown; the claim; the outcome with
    # routed_at.  Two acquires: the connection goes back to the pool for the send, and the
    # release sends no reset.
    assert len(statements) == 3, statements
    assert acquired == 2
    row = await _alert_row(clinic.pool, alert_id)
    assert row["routed_at"] is not None and await clinic.logs(alert_id) == [("ward", "notify", "delivered")]


async def test_alerts_routed_at_once_share_their_statements(clinic: Clinic) -> None:
    channel = await clinic.channel("ward")
    await clinic.rule([channel])
    warm_up = await clinic.alert(metric="spo2")
    alert_ids = [await clinic.alert(metric=m) for m in ("hrv_rmssd", "glucose", "resting_heart_rate", "steps")]
    statements: list[str] = []
    counted = await _counting_pool(statements)
    try:
        await route_alert(counted, runtime.current().keyring, warm_up)
        statements.clear()
        reports = await asyncio.gather(*(route_alert(counted, runtime.current().keyring, a) for a in alert_ids))
    finally:
        await counted.close()

    assert [r.delivered for r in reports] == [1, 1, 1, 1]
    assert sorted(a["alert_id"] for a in clinic.sent("ward")) == sorted([warm_up, *alert_ids])
    # One load and one claim for the four, then a write per set of sends that ended together
    # (one alone would take three statements).
    assert statements[0].startswith("SELECT a.*"), statements
    assert "INSERT INTO notification_logs" in statements[1] and len(statements) <= 6, statements
    for alert_id in alert_ids:
        assert await clinic.logs(alert_id) == [("ward", "notify", "delivered")]
        assert (await _alert_row(clinic.pool, alert_id))["routed_at"] is not None


class Staggered(Plain):
    """Answers each send 0.7 ms after the one before, as one busy peer does."""

    kind = "staggered"
    sent = 0

    async def send(self, message: Rendered) -> Delivery:
        Staggered.sent += 1
        await asyncio.sleep(0.0007 * Staggered.sent)
        return Delivery(DeliveryStatus.DELIVERED)


async def test_sends_ending_in_a_stream_share_one_write_though_it_outlasts_the_wait(
    clinic: Clinic, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(CHANNELS, Staggered.kind, Staggered)
    monkeypatch.setattr(Staggered, "sent", 0)
    peer = await clinic.channel("peer", kind="staggered", url="x")
    await clinic.rule([peer])
    metrics = ("hrv_rmssd", "glucose", "resting_heart_rate", "steps", "spo2", "respiratory_rate", "active_energy")
    alert_ids = [await clinic.alert(metric=m) for m in metrics]
    statements: list[str] = []
    counted = await _counting_pool(statements)
    try:
        reports = await asyncio.gather(*(route_alert(counted, runtime.current().keyring, a) for a in alert_ids))
    finally:
        await counted.close()

    assert [r.delivered for r in reports] == [1] * len(alert_ids)
    # Spread over 5 ms, longer than a few waits of GATHER_OUTCOMES_S, but never that far apart.
    assert sum(s.startswith("WITH o AS") for s in statements) == 1, statements


async def test_alerts_arriving_moments_after_the_first_join_its_batch(clinic: Clinic) -> None:
    channel = await clinic.channel("ward")
    await clinic.rule([channel])
    warm_up = await clinic.alert(metric="spo2")
    first, *later = [await clinic.alert(metric=m) for m in ("hrv_rmssd", "glucose", "resting_heart_rate")]
    statements: list[str] = []
    counted = await _counting_pool(statements)
    keyring = runtime.current().keyring
    try:
        await route_alert(counted, keyring, warm_up)
        statements.clear()
        leading = asyncio.ensure_future(route_alert(counted, keyring, first))
        for _ in range(3):  # the first alert's batch is under way before the others come
            await asyncio.sleep(0)
        reports = await asyncio.gather(leading, *(route_alert(counted, keyring, a) for a in later))
    finally:
        await counted.close()

    assert [r.delivered for r in reports] == [1, 1, 1]
    assert sum(s.startswith("SELECT a.*") for s in statements) == 1, statements
    assert sum("INSERT INTO notification_logs" in s for s in statements) == 1, statements


async def test_two_alerts_of_one_patient_and_metric_at_once_send_once_within_the_cooldown(clinic: Clinic) -> None:
    channel = await clinic.channel("ward")
    await clinic.rule([channel])
    first, second = await clinic.alert(), await clinic.alert()

    reports = await asyncio.gather(clinic.route(first), clinic.route(second))

    assert [a["alert_id"] for a in clinic.sent("ward")] == [first]
    assert [(r.delivered, r.suppressed) for r in reports] == [(1, 0), (0, 1)]
    assert await clinic.logs(second) == [("ward", "notify", "suppressed")]


async def test_an_alert_waits_while_its_cooldowns_evidence_is_in_flight_elsewhere(clinic: Clinic) -> None:
    channel = await clinic.channel("ward")
    rule = await clinic.rule([channel])
    first, second = await clinic.alert(), await clinic.alert()
    async with clinic.pool.acquire() as conn:
        # Another worker is sending the first alert right now.
        await delivery_log.start_many(conn, first, [(channel, rule)], lease=timedelta(minutes=2))

    waiting = await clinic.route(second)

    assert clinic.sent("ward") == [] and waiting.deferred_until is not None and waiting.delivered == 0
    assert await clinic.logs(second) == []
    assert (await _alert_row(clinic.pool, second))["routed_at"] is None
    # That send was delivered: the alert, looked at again, is held back by the cooldown.
    await clinic.pool.execute(
        "UPDATE notification_logs SET status = 'delivered', finished_at = now() WHERE alert_id = $1", first
    )
    again = await clinic.route(second)
    assert again.suppressed == 1 and clinic.sent("ward") == []


async def test_two_workers_reading_one_patients_key_at_once_send_once_and_suppress_the_other(
    clinic: Clinic,
) -> None:
    channel = await clinic.channel("ward")
    await clinic.rule([channel], cooldown=timedelta(minutes=60))
    first, second = await clinic.alert(), await clinic.alert()

    reports = dict(zip((first, second), await _route_at_once(clinic, [first, second]), strict=True))

    await _one_sent_and_the_other_suppressed(clinic, reports)


async def _one_sent_and_the_other_suppressed(clinic: Clinic, reports: dict[int, Any]) -> None:
    sent = [a["alert_id"] for a in clinic.sent("ward")]
    assert len(sent) == 1, f"both alerts paged inside the cooldown: {sent}"
    [winner], [loser] = sent, [a for a in reports if a not in sent]
    waited = reports[loser]
    assert waited.delivered == 0 and waited.deferred_until is not None
    # The loser comes back when its report says: the send it waited for has gone out.
    again = await clinic.route(loser, now=waited.deferred_until)
    assert again.suppressed == 1 and [a["alert_id"] for a in clinic.sent("ward")] == [winner]
    async with clinic.pool.acquire() as conn:
        row = (await deliveries.deliveries_for_alert(conn, loser))[-1]
    assert row.status == "suppressed" and row.detail is not None
    assert row.detail.startswith(f"cooldown: alert {winner} went out"), row.detail


async def test_the_alert_that_lost_the_cooldown_goes_out_when_the_winners_send_failed(clinic: Clinic) -> None:
    channel = await clinic.channel("ward")
    await clinic.rule([channel], cooldown=timedelta(minutes=60))
    first, second = await clinic.alert(), await clinic.alert()
    blocked = clinic.sink("ward")
    blocked.mkdir()  # the console channel cannot write: a transient failure

    reports = dict(zip((first, second), await _route_at_once(clinic, [first, second]), strict=True))

    [failed] = [a for a, r in reports.items() if isinstance(r, TransientDeliveryError)]
    [loser] = [a for a in reports if a != failed]
    blocked.rmdir()
    # As if routed one after the other: the failed send is no cooldown, so the other alert goes
    # out, and the first one's retry is held back by it.
    again = await clinic.route(loser, now=reports[loser].deferred_until)
    retried = await clinic.route(failed)
    assert again.delivered == 1 and retried.suppressed == 1
    assert [a["alert_id"] for a in clinic.sent("ward")] == [loser]


async def test_two_workers_sending_groups_for_one_patients_key_at_once_send_once_and_suppress_the_other(
    clinic: Clinic,
) -> None:
    channel = await clinic.channel("ward")
    rule = await clinic.rule([channel], cooldown=timedelta(minutes=60), group_wait=timedelta(seconds=30))
    first, second = await clinic.alert(), await clinic.alert()
    # A worker died mid-send of both alerts: neither can ride in the other's group, so each
    # worker sends a group of its own alert alone.
    await clinic.pool.execute(
        "INSERT INTO notification_logs (alert_id, channel_id, purpose, rule_id, attempt, status, created_at)"
        " SELECT id, $2, 'notify', $3, 1, 'sending', now() - interval '10 minutes' FROM alerts WHERE id = ANY($1)",
        [first, second], channel, rule,
    )  # fmt: skip
    now = datetime.now(UTC) + timedelta(seconds=31)

    reports = dict(zip((first, second), await _route_at_once(clinic, [first, second], now=now), strict=True))

    await _one_sent_and_the_other_suppressed(clinic, reports)


async def _route_at_once(clinic: Clinic, alert_ids: list[int], now: datetime | None = None) -> list[Any]:
    """Route each alert from a pool of its own, as worker processes do, with every read of the
    cooldown's evidence done before any claim: each report, or what routing raised."""
    keyring = runtime.current().keyring
    url = runtime.current().services.database_url
    workers = [await db_pool.create_pool(url, max_size=1, generic_plans=True) for _ in alert_ids]
    gate = await asyncpg.connect(url)
    try:
        # While the gate holds the alerts' row locks, each worker reads its alert's evidence and
        # then waits at its claim.
        held = gate.transaction()
        await held.start()
        await gate.execute("SELECT 1 FROM alerts WHERE id = ANY($1::bigint[]) FOR UPDATE", alert_ids)
        routing = [
            asyncio.ensure_future(route_alert(w, keyring, a, now=now)) for w, a in zip(workers, alert_ids, strict=True)
        ]
        await eventually(lambda: _claims_waiting(gate, len(alert_ids)), timeout=10, what="the claims to wait")
        await held.rollback()
        return await asyncio.gather(*routing, return_exceptions=True)
    finally:
        await gate.close()
        for pool in workers:
            await pool.close()


async def _claims_waiting(conn: asyncpg.Connection, count: int) -> bool:
    # A statement waiting on a row lock shows no query text here: count the waiters.
    found = await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    return bool(found == count)


async def test_a_cooldown_is_claimed_only_as_routing_read_it_or_by_a_more_severe_alert(clinic: Clinic) -> None:
    channel = await clinic.channel("ward")
    rule = await clinic.rule([channel], cooldown=timedelta(minutes=60))
    first, late, critical = await clinic.alert(), await clinic.alert(), await clinic.alert("critical")

    async def start(alert_id: int, seen: int | None) -> delivery_log.Attempt:
        async with clinic.pool.acquire() as conn:
            found = await delivery_log.start_each(
                conn, [(alert_id, channel, rule)], lease=timedelta(minutes=2), cooldowns={(alert_id, rule): seen}
            )
        return found[alert_id, channel]

    [claim] = (await start(first, None)).log_ids.values()
    # Read before the first alert's claim: it must be decided again.  Read after it: it may go
    # (the first alert's send then holds it back in routing, not here).
    assert (await start(late, None)) == delivery_log.Attempt(cooldown_taken=True)
    assert list((await start(late, claim)).log_ids) == [late]
    # A critical alert is never held back by a warning's send.
    assert list((await start(critical, claim)).log_ids) == [critical]
    assert await clinic.pool.fetchval("SELECT alert_id FROM cooldown_claims WHERE rule_id = $1", rule) == critical


async def test_a_group_claims_the_cooldown_of_every_key_it_carries_or_starts_nothing(clinic: Clinic) -> None:
    channel = await clinic.channel("ward")
    rule = await clinic.rule([channel], cooldown=timedelta(minutes=60), group_wait=timedelta(seconds=30))
    lead, rider, other = await clinic.alert(), await clinic.alert(metric="spo2"), await clinic.alert(metric="spo2")
    lease = timedelta(minutes=2)
    async with clinic.pool.acquire() as conn:
        # Another worker's alert claimed the rider's key after the group read it.
        found = await delivery_log.start_each(
            conn, [(other, channel, rule)], lease=lease, cooldowns={(other, rule): None}
        )
        [claim] = found[other, channel].log_ids.values()

        async def start(rider_seen: int | None) -> delivery_log.Attempt:
            cooldowns = {(lead, rule): None, (rider, rule): rider_seen}
            return await delivery_log.start_attempts(
                conn, lead, channel, lease=lease, rule_id=rule, also=[rider], cooldowns=cooldowns
            )

        assert await start(None) == delivery_log.Attempt(cooldown_taken=True)
        claims = "SELECT key, alert_id FROM cooldown_claims WHERE rule_id = $1 ORDER BY key"
        assert [tuple(r) for r in await conn.fetch(claims, rule)] == [("spo2", other)]
        assert (
            await conn.fetchval("SELECT count(*) FROM notification_logs WHERE alert_id = ANY($1)", [lead, rider]) == 0
        )
        # Read after that claim, the group takes both keys.
        assert list((await start(claim)).log_ids) == [lead, rider]
        assert [tuple(r) for r in await conn.fetch(claims, rule)] == [(HR, lead), ("spo2", rider)]


async def test_only_a_rule_with_a_cooldown_claims_it_and_erasing_a_patient_or_tenant_removes_the_claims(
    clinic: Clinic,
) -> None:
    ward, desk = await clinic.channel("ward"), await clinic.channel("desk")
    cooled = await clinic.rule([ward], cooldown=timedelta(minutes=60))
    await clinic.rule([desk], cooldown=timedelta(0))
    other = await clinic.patient("Sam Two")

    for patient in (clinic.user_id, other):
        await clinic.route(await clinic.alert(user_id=patient))

    claims = "SELECT user_id, rule_id FROM cooldown_claims WHERE user_id = ANY($1::bigint[]) ORDER BY user_id"
    patients = [clinic.user_id, other]
    assert [tuple(r) for r in await clinic.pool.fetch(claims, patients)] == [(clinic.user_id, cooled), (other, cooled)]
    async with clinic.pool.acquire() as conn:
        assert await users.erase(conn, clinic.tenant_id, clinic.user_id, "test")
        assert [r["user_id"] for r in await conn.fetch(claims, patients)] == [other]
        await conn.execute("DELETE FROM tenants WHERE id = $1", clinic.tenant_id)
        assert await conn.fetch(claims, patients) == []


async def _counting_pool(statements: list[str], *, max_size: int = 4, **options: Any) -> asyncpg.Pool:
    """A pool with the worker pool's init and reset (db.pool), logging each statement it runs into
    ``statements``."""
    return await asyncpg.create_pool(
        runtime.current().services.database_url, min_size=1, max_size=max_size,
        init=lambda conn: _init_and_log(conn, statements), reset=db_pool.keep_session, **options,
    )  # fmt: skip


async def _init_and_log(conn: asyncpg.Connection, into: list[str]) -> None:
    await db_pool.init_connection(conn)
    conn.add_query_logger(lambda record: into.append(record.query))


async def _log_queries(conn: asyncpg.Connection, into: list[str]) -> None:
    conn.add_query_logger(lambda record: into.append(record.query))


async def test_two_channels_are_claimed_in_one_statement_and_a_retry_sends_only_the_failed_one(
    clinic: Clinic,
) -> None:
    ok = await clinic.channel("ok")
    blocked = clinic.dir / "blocked.jsonl"
    blocked.mkdir()
    flaky = await clinic.channel("blocked")
    await clinic.rule([ok, flaky])
    alert_id = await clinic.alert()

    with pytest.raises(TransientDeliveryError):
        await clinic.route(alert_id)
    assert (await _alert_row(clinic.pool, alert_id))["routed_at"] is None
    blocked.rmdir()
    await clinic.route(alert_id)

    assert [a["alert_id"] for a in clinic.sent("ok")] == [alert_id]
    assert [a["alert_id"] for a in clinic.sent("blocked")] == [alert_id]
    rows = await clinic.pool.fetch(
        "SELECT channel_id, attempt, status, send_id = id AS leads FROM notification_logs WHERE alert_id = $1"
        " ORDER BY id",
        alert_id,
    )
    assert [(r["channel_id"], r["attempt"], r["status"], r["leads"]) for r in rows] == [
        (ok, 1, "delivered", True),
        (flaky, 1, "failed", True),
        (flaky, 2, "delivered", True),
    ]
    assert (await _alert_row(clinic.pool, alert_id))["routed_at"] is not None


async def test_an_alert_with_a_channel_in_flight_elsewhere_is_not_marked_routed(clinic: Clinic) -> None:
    ward = await clinic.channel("ward")
    pager = await clinic.channel("pager")
    rule = await clinic.rule([ward, pager])
    alert_id = await clinic.alert()
    async with clinic.pool.acquire() as conn:
        # Another worker is sending to the pager right now.
        await delivery_log.start_many(conn, alert_id, [(pager, rule)], lease=timedelta(minutes=2))

    with pytest.raises(TransientDeliveryError):
        await clinic.route(alert_id)

    assert [a["alert_id"] for a in clinic.sent("ward")] == [alert_id] and clinic.sent("pager") == []
    assert (await _alert_row(clinic.pool, alert_id))["routed_at"] is None


async def test_an_attempt_in_flight_is_not_claimed_twice_and_an_abandoned_one_is_closed(clinic: Clinic) -> None:
    channel = await clinic.channel("ward")
    rule = await clinic.rule([channel])
    alert_id = await clinic.alert()
    lease = timedelta(minutes=2)

    async with clinic.pool.acquire() as conn:
        first = await delivery_log.start_many(conn, alert_id, [(channel, rule)], lease=lease)
        again = await delivery_log.start_many(conn, alert_id, [(channel, rule)], lease=lease)
        await conn.execute("UPDATE notification_logs SET created_at = now() - interval '3 minutes'")
        after_lease = await delivery_log.start_many(conn, alert_id, [(channel, rule)], lease=lease)

    assert list(first[channel].log_ids) == [alert_id] and first[channel].in_flight_for is None
    assert again[channel].log_ids == {} and again[channel].in_flight_for is not None
    assert list(after_lease[channel].log_ids) == [alert_id]
    rows = await clinic.pool.fetch(
        "SELECT attempt, status, detail FROM notification_logs WHERE alert_id = $1 ORDER BY attempt", alert_id
    )
    assert [(r["attempt"], r["status"]) for r in rows] == [(1, "failed"), (2, "sending")]
    assert rows[0]["detail"] == "abandoned: the worker stopped mid-send"


async def test_concurrent_claims_of_one_channel_make_exactly_one_attempt(clinic: Clinic) -> None:
    channel = await clinic.channel("ward")
    rule = await clinic.rule([channel])
    alert_id = await clinic.alert()

    async def claim() -> dict[int, delivery_log.Attempt]:
        async with clinic.pool.acquire() as conn:
            return await delivery_log.start_many(conn, alert_id, [(channel, rule)], lease=timedelta(minutes=2))

    found = await asyncio.gather(*(claim() for _ in range(6)))

    assert sum(bool(f[channel].log_ids) for f in found) == 1
    assert await clinic.pool.fetchval("SELECT count(*) FROM notification_logs WHERE alert_id = $1", alert_id) == 1
