"""Quiet hours: a daily window of wall-clock time in the rule owner's timezone.

Pure: the caller passes ``now``.  A window whose start is after its end spans midnight
(22:00–07:00); equal start and end is no window.  Non-critical alerts that fall in it are
deferred to its end (Novu's schedule, not Alertmanager's mute, which drops them).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

log = logging.getLogger(__name__)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        # Rules and teams are checked when created; a zone dropped from tzdata since is not.
        log.warning("unknown timezone %r; quiet hours use UTC", name)
        return ZoneInfo("UTC")


def quiet_until(now: datetime, start: time, end: time, timezone: str) -> datetime | None:
    """When the quiet window ``now`` falls in ends (in UTC), or None when ``now`` is not in it."""
    zone = _zone(timezone)
    local = now.astimezone(zone)
    clock = local.time().replace(tzinfo=None)
    if start == end:
        return None
    if start < end:
        inside, end_day = start <= clock < end, local.date()
    else:
        inside = clock >= start or clock < end
        end_day = local.date() + timedelta(days=1) if clock >= start else local.date()
    if not inside:
        return None
    # A wall time skipped by a DST change comes out an hour late, never early: still after now.
    return datetime.combine(end_day, end, tzinfo=zone).astimezone(UTC)
