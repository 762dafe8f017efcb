"""The wording of messages routing composes itself: a group's summary and an escalation.

Both are plain Alerts, so every channel renders them as it renders any alert.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta

from db.alerts import Alert, severity_rank


def summarise(alerts: Sequence[Alert]) -> Alert:
    """One alert standing for ``alerts`` (one patient's, lead first): the worst severity, a
    title that counts them and a body that lists them.  A single alert is returned as is.

    The summary keeps the lead's id, so an acknowledgement from its message lands on the lead.
    """
    lead = alerts[0]
    if len(alerts) == 1:
        return lead
    worst = max(alerts, key=lambda a: severity_rank(a.severity)).severity
    categories = {a.category for a in alerts}
    metrics = {a.metric for a in alerts}
    recorded = [a.recorded_at for a in alerts if a.recorded_at is not None]
    lines = [f"• {a.severity}: {a.title}" + (f" — {a.body}" if a.body else "") for a in alerts]
    return replace(
        lead,
        severity=worst,
        category=lead.category if len(categories) == 1 else "summary",
        metric=lead.metric if len(metrics) == 1 else None,
        title=f"{len(alerts)} alerts for {lead.patient}",
        body="\n".join(lines),
        observed_value=None,
        threshold=None,
        recorded_at=max(recorded) if recorded else None,
    )


def escalated(alert: Alert, after: timedelta) -> Alert:
    """The alert as its escalation channels see it: saying nobody acknowledged it in time."""
    return replace(
        alert,
        title=f"Escalated: {alert.title}",
        body=f"Not acknowledged within {_duration(after)}. {alert.body}",
    )


def _duration(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"
