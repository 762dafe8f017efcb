"""Alert buttons: Acknowledge, Snooze 1 h / 4 h / 24 h, Resolve; and the alert card they sit on.

Each click is authorised for the *clicker* (anyone in a channel can click): their chat
identity must be linked in the workspace's tenant, the alert must be of that tenant, and they
must act in a care team of the alert's patient (``db.care_teams.can_act_on_alert``).  The
state change is ``db.alerts``' (audited, events published, escalation stands down); a second
click finds the change made and only redraws the card.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from bot.commands.base import SNOOZE_HOURS, Action, Button, Field, Invocation, Reply
from bot.commands.registry import actor
from db import alerts, audit, care_teams
from pipeline import actors, triggers

_LABELS = {
    Action.ACK: "Acknowledge",
    Action.SNOOZE_1H: "Snooze 1h",
    Action.SNOOZE_4H: "Snooze 4h",
    Action.SNOOZE_24H: "Snooze 24h",
    Action.RESOLVE: "Resolve",
}


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    """``card``: the alert's card to put in place of the clicked one (None: leave it);
    ``notice``: an ephemeral word to the clicker (a refusal), or None."""

    card: Reply | None
    notice: Reply | None = None


def buttons(alert_id: int, status: str) -> tuple[Button, ...]:
    """The buttons an alert in ``status`` still offers: none once resolved."""
    if status == "resolved":
        return ()
    wanted = [Action.SNOOZE_1H, Action.SNOOZE_4H, Action.SNOOZE_24H, Action.RESOLVE]
    if status == "open":
        wanted.insert(0, Action.ACK)
    return tuple(Button(a, alert_id, _LABELS[a], danger=a is Action.RESOLVE) for a in wanted)


async def card(conn: asyncpg.Connection, alert_id: int) -> Reply | None:
    """The alert as a care team sees it in a channel: severity, title, a pseudonymous patient
    label, who acted, and the buttons left.  Not ephemeral."""
    alert = await alerts.get(conn, alert_id)
    life = await alerts.lifecycle(conn, alert_id)
    if alert is None or life is None:
        return None
    acted = []
    if alert.acknowledged_at is not None:
        acted.append(f"Acknowledged by {await _who(conn, alert.acknowledged_by)} at {alert.acknowledged_at:%H:%M} UTC")
    if alert.status == "snoozed" and life.snoozed_until is not None:
        acted.append(f"Snoozed by {await _who(conn, life.snoozed_by)} until {life.snoozed_until:%b %d %H:%M} UTC")
    if life.resolved_at is not None:
        acted.append(f"Resolved by {await _who(conn, life.resolved_by)} at {life.resolved_at:%H:%M} UTC")
    return Reply(
        f"{alert.severity.upper()}: {alert.title}"[:150],
        fields=(Field("Patient", f"#{alert.user_id}"), Field("Status", alert.status)),
        context=" · ".join(acted) or f"Raised {alert.created_at:%b %d %H:%M} UTC",
        buttons=buttons(alert.id, alert.status),
        ephemeral=False,
    )


async def act(pool: asyncpg.Pool, invocation: Invocation, action: Action, alert_id: int) -> ActionOutcome:
    """Authorise and apply one click; audited either way.  Never raises for a refusal."""
    async with pool.acquire() as conn:
        alert_tenant = await conn.fetchval(
            "SELECT u.tenant_id FROM alerts a JOIN users u ON u.id = a.user_id WHERE a.id = $1", alert_id
        )
        allowed = (
            invocation.user_id is not None
            and invocation.tenant_id is not None
            and alert_tenant == invocation.tenant_id
            and await care_teams.can_act_on_alert(conn, invocation.user_id, alert_id)
        )
        details = {"action": action.value, "chat_identity": invocation.identity.label, "channel": invocation.channel_id}
        if not allowed:
            # Audited in the workspace's tenant only: another tenant's alert ids are not theirs to learn about.
            await audit.record(
                conn, tenant_id=invocation.tenant_id, actor=actor(invocation), action="chat.denied",
                subject_type="alert", subject_id=alert_id if alert_tenant == invocation.tenant_id else None,
                details=details,
            )  # fmt: skip
            why = "Link your account with /connect first." if invocation.user_id is None else (
                "Only clinicians, nurses and coaches of this patient's care team can do that.")  # fmt: skip
            return ActionOutcome(None, Reply("Not allowed", (why,)))
        by = f"user:{invocation.user_id}"
        if action is Action.ACK:
            await alerts.acknowledge(conn, alert_id, by)
        elif action is Action.RESOLVE:
            await alerts.resolve(conn, alert_id, by)
        else:
            until = datetime.now(UTC) + timedelta(hours=SNOOZE_HOURS[action])
            await alerts.snooze(conn, alert_id, until, by)
        await audit.record(
            conn, tenant_id=invocation.tenant_id, actor=by, action=f"chat.alert_{action.value}",
            subject_type="alert", subject_id=alert_id, details=details | {"visibility": "in_channel"},
        )  # fmt: skip
        redrawn = await card(conn, alert_id)
    # alert.acknowledged / alert.resolved are in the outbox now; send them on without waiting
    # for the reconciler.
    triggers.enqueue(actors.dispatch_events)
    return ActionOutcome(redrawn)


async def _who(conn: asyncpg.Connection, by: str | None) -> str:
    """A display name for ``user:<id>``; anything else (an API key) as it is."""
    if by is not None and by.startswith("user:") and by[5:].isdigit():
        name: str | None = await conn.fetchval("SELECT display_name FROM users WHERE id = $1", int(by[5:]))
        return name or by
    return by or "someone"
