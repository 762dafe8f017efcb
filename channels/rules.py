"""What a rule decides for an alert right now: send, wait for its group, defer past quiet
hours, or suppress (silence, inhibition, cooldown).  ``decide`` is pure: routing reads its
evidence (the silence, the inhibitor, the cooldown's last send) in one query (db.routing.load);
``decide_now`` reads it for one alert.  ``now`` is passed in, so a test can stand anywhere in the day.

A cooldown's evidence may change between that read and the send's claim (another worker's alert
of the same patient and key): the claim finds out (db.delivery_log.start_each, or
start_attempts for a group), and routing then waits and decides again, as when the evidence is
in flight.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from channels.quiet import quiet_until
from db import delivery_log, silences
from db.alerts import Alert
from db.delivery_log import Cooldown
from db.notification_channels import ChannelRow
from db.routing import Rule

# A critical alert mutes the patient's lesser alerts on the same metric raised this close to it.
INHIBIT_WINDOW = timedelta(hours=1)
# An alert whose cooldown evidence is still being sent (or whose claim found another alert's
# claim of the cooldown) looks again this much later: by then that send is delivered (suppress
# this one) or failed (send this one).
IN_FLIGHT_RECHECK = timedelta(seconds=10)


class Action(enum.IntEnum):
    """Ordered from most to least permissive: where rules disagree on a channel, the lowest wins."""

    SEND = 0
    WAIT = 1  # for the rule's group or a send in flight: nothing logged, the alert comes back later
    DEFER = 2  # quiet hours: logged 'deferred' until they end
    SUPPRESS = 3  # logged 'suppressed', never sent


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    rule: Rule
    until: datetime | None = None
    reason: str | None = None


def mute_reason(silence_id: int | None, inhibitor_id: int | None) -> str | None:
    """Why every rule must suppress the alert, given the silence and the inhibiting critical
    alert found for it (a silence wins), or None."""
    if silence_id is not None:
        return f"silenced by silence {silence_id}"
    if inhibitor_id is not None:
        return f"inhibited by critical alert {inhibitor_id}"
    return None


async def muted(conn: asyncpg.Connection, alert: Alert, now: datetime) -> str | None:
    """Why every rule must suppress the alert (a silence, an inhibiting critical alert), or None."""
    silence = await silences.silencing(conn, alert, now)
    if silence is not None:
        return mute_reason(silence, None)
    return mute_reason(None, await silences.inhibiting(conn, alert, INHIBIT_WINDOW))


def decide(
    alert: Alert, rule: Rule, now: datetime, mute: str | None, cooldown: Cooldown | None, *, in_group: bool = False
) -> Decision:
    """The rule's decision.  ``mute`` is ``mute_reason(...)``'s answer, ``cooldown`` the rule's
    latest send that holds the alert back (``delivery_log.last_sent`` since ``now`` less the
    rule's cooldown, or a send in flight; ignored when the rule has none).  ``in_group`` skips the
    group wait, for an alert about to join a message another alert's wait has already released."""
    if mute is not None:
        return Decision(Action.SUPPRESS, rule, reason=mute)
    if rule.cooldown > timedelta(0) and cooldown is not None and cooldown.finished_at is None:
        reason = f"cooldown: alert {cooldown.alert_id} is being sent"
        return Decision(Action.WAIT, rule, now + IN_FLIGHT_RECHECK, reason)
    if rule.cooldown > timedelta(0) and cooldown is not None:
        reason = f"cooldown: alert {cooldown.alert_id} went out {cooldown.finished_at:%Y-%m-%d %H:%M:%S} UTC"
        return Decision(Action.SUPPRESS, rule, reason=reason)
    if alert.severity != "critical" and rule.quiet_start is not None and rule.quiet_end is not None:
        until = quiet_until(now, rule.quiet_start, rule.quiet_end, rule.timezone)
        if until is not None:
            reason = f"quiet hours ({rule.quiet_start:%H:%M}–{rule.quiet_end:%H:%M} {rule.timezone})"
            return Decision(Action.DEFER, rule, until, reason)
    if not in_group and rule.group_wait > timedelta(0) and alert.created_at + rule.group_wait > now:
        return Decision(Action.WAIT, rule, alert.created_at + rule.group_wait, "waiting for its group")
    return Decision(Action.SEND, rule)


async def decide_now(
    conn: asyncpg.Connection, alert: Alert, rule: Rule, now: datetime, *, in_group: bool = False
) -> Decision:
    """``decide`` with its evidence read for this one alert (a group's riders)."""
    mute = await muted(conn, alert, now)
    cooldown = None
    if mute is None and rule.cooldown > timedelta(0):
        cooldown = await delivery_log.last_sent(conn, rule.id, alert, now - rule.cooldown)
    return decide(alert, rule, now, mute, cooldown, in_group=in_group)


def by_channel(decisions: Iterable[Decision]) -> dict[int, tuple[ChannelRow, Decision]]:
    """Each channel of the decided rules, with the most permissive decision among the rules that
    list it (the earliest when two defer or wait), so a care team's rule without quiet hours
    still sends now what a patient's own rule would hold until morning."""
    chosen: dict[int, tuple[ChannelRow, Decision]] = {}
    for decision in decisions:
        for channel in decision.rule.channels:
            held = chosen.get(channel.id)
            if held is None or _better(decision, held[1]):
                chosen[channel.id] = (channel, decision)
    return chosen


def _better(new: Decision, old: Decision) -> bool:
    if new.action != old.action:
        return new.action < old.action
    return new.until is not None and old.until is not None and new.until < old.until
