"""An alert rule as ``key=value`` words or a modal's inputs: one validation for both, and the form.

``check`` turns the strings into typed values and a message per bad key; ``/rules add|edit``
with typed arguments shows the messages naming each key, a modal under each input.  Empty
means: none (quiet hours, metrics and categories match anything), the default (severity,
cooldown), or is refused (name, channels).
"""

from __future__ import annotations

import re
from datetime import time, timedelta
from typing import Any

import asyncpg

from bot.api.rules import ALERT_CATEGORIES, MAX_MINUTES
from bot.commands.forms import Choice, Form, Input
from db.alerts import SEVERITIES
from db.care_teams import ACTING_ROLES
from db.notification_rules import RuleRow
from pipeline.vocabulary import UNITS

# In order of importance: a Discord modal shows the first five.
LABELS = {
    "name": "Name",
    "channels": "Channels",
    "severity": "Minimum severity",
    "quiet": "Quiet hours",
    "metrics": "Metrics",
    "categories": "Categories",
    "cooldown": "Cooldown (minutes)",
    "team": "Care team (empty: your own alerts)",
    "patient": "Patient",
}
ADD_KEYS = tuple(LABELS)
EDIT_KEYS = tuple(k for k in LABELS if k not in ("team", "patient"))
ALIASES = {"channel": "channels"}  # the typed form's older spelling
_QUIET = re.compile(r"^(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})$")
_SPLIT = re.compile(r"[,\s]+")


def check(form: dict[str, str], *, adding: bool) -> tuple[dict[str, Any], dict[str, str]]:
    """Typed values (``name``, ``channel_ids``, ``min_severity``, ``quiet_hours``, ``metrics``,
    ``categories``, ``cooldown``; ``team`` and ``patient`` as given) and errors by key.  Keys
    absent from ``form`` are left out (an edit keeps them)."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    raw = {k: v.strip() for k, v in form.items()}
    if "name" in raw or adding:
        name = raw.get("name", "")
        if not 0 < len(name) <= 200:
            errors["name"] = "is required (at most 200 characters)"
        values["name"] = name
    if "channels" in raw or adding:
        words = _words(raw.get("channels", ""))
        if not words or not all(w.isdigit() and 0 < int(w) < 2**63 for w in words):
            errors["channels"] = "takes one or more channel ids, e.g. 3 or 3,7"
        else:
            values["channel_ids"] = sorted({int(w) for w in words})
    if raw.get("severity"):
        if raw["severity"].lower() not in SEVERITIES:
            errors["severity"] = f"must be one of {', '.join(SEVERITIES)}"
        values["min_severity"] = raw["severity"].lower()
    if "quiet" in raw:
        quiet = _quiet(raw["quiet"])
        if quiet is False:
            errors["quiet"] = "takes HH:MM-HH:MM (e.g. 22:00-07:00), or off"
        else:
            values["quiet_hours"] = quiet
    for key, known in (("metrics", tuple(UNITS)), ("categories", ALERT_CATEGORIES)):
        if key in raw:
            words = _words(raw[key])
            unknown = [w for w in words if w not in known]
            if unknown:
                errors[key] = f"unknown {', '.join(unknown)}; one or more of {', '.join(known)}"
            values[key] = words or None
    if raw.get("cooldown"):
        if not raw["cooldown"].isdigit() or int(raw["cooldown"]) > MAX_MINUTES:
            errors["cooldown"] = f"takes whole minutes from 0 to {MAX_MINUTES}"
        else:
            values["cooldown"] = timedelta(minutes=int(raw["cooldown"]))
    for key in ("team", "patient"):
        if raw.get(key):
            values[key] = raw[key]
    return values, errors


def _words(text: str) -> list[str]:
    return [w for w in _SPLIT.split(text) if w]


def _quiet(text: str) -> tuple[time, time] | None | bool:
    """(start, end), None for none, False when it does not parse."""
    if text.lower() in ("", "off", "none"):
        return None
    found = _QUIET.match(text)
    try:
        if found is None:
            return False
        h1, m1, h2, m2 = (int(g) for g in found.groups())
        start, end = time(h1, m1), time(h2, m2)
    except ValueError:
        return False
    return (start, end) if start != end else False


async def build(conn: asyncpg.Connection, tenant_id: int, user_id: int, rule: RuleRow | None) -> Form:
    """The add form (``rule`` None: defaults, and the care teams the user acts in) or the edit
    form of ``rule``, pre-filled.  Channels are the tenant's, the rule's own first (a select
    shows 100, and an edit must not drop one it did not show)."""
    channels = await conn.fetch(
        "SELECT id, kind, label || CASE WHEN enabled THEN '' ELSE ' (off)' END AS label FROM notification_channels"
        " WHERE tenant_id = $1 ORDER BY id = ANY($2::bigint[]) DESC, enabled DESC, id LIMIT 100",
        tenant_id,
        rule.channel_ids if rule else [],
    )
    ids = ", ".join(str(c["id"]) for c in channels[:5])
    inputs = [
        Input("name", LABELS["name"], "e.g. Night watch", rule.name if rule else "", required=True),
        Input(
            "channels",
            LABELS["channels"],
            f"Channel ids, comma-separated ({ids}…)"[:100],
            ", ".join(map(str, rule.channel_ids)) if rule else "",
            required=True,
            choices=tuple(Choice(str(c["id"]), f"#{c['id']} {c['kind']} · {c['label']}") for c in channels),
            multiple=True,
        ),  # fmt: skip
        Input(
            "severity",
            LABELS["severity"],
            "info, warning or critical",
            rule.min_severity if rule else "warning",
            choices=tuple(Choice(s, s) for s in SEVERITIES),
        ),  # fmt: skip
        Input("quiet", LABELS["quiet"], "22:00-07:00 (your team's clock), or empty", _clock(rule)),
        Input(
            "metrics",
            LABELS["metrics"],
            "e.g. heart_rate, spo2; empty: any metric",
            ", ".join(rule.metrics or ()) if rule else "",
        ),  # fmt: skip
        Input(
            "categories",
            LABELS["categories"],
            "e.g. clinical, glycemic; empty: any category",
            ", ".join(rule.categories or ()) if rule else "",
            choices=tuple(Choice(c, c) for c in ALERT_CATEGORIES),
            multiple=True,
        ),  # fmt: skip
        Input(
            "cooldown",
            LABELS["cooldown"],
            "Minutes between repeats of one alert",
            str(int(rule.cooldown.total_seconds() // 60)) if rule else "60",
            max_length=6,
        ),  # fmt: skip
    ]
    if rule is None:
        teams = await conn.fetch(
            "SELECT DISTINCT t.id, t.name FROM care_teams t JOIN care_team_members m ON m.care_team_id = t.id"
            " WHERE t.tenant_id = $1 AND m.user_id = $2 AND m.role = ANY($3::text[]) ORDER BY t.name LIMIT 100",
            tenant_id,
            user_id,
            list(ACTING_ROLES),
        )
        if teams:
            team_choices = tuple(Choice(t["name"], t["name"]) for t in teams)
            inputs.append(Input("team", LABELS["team"], "A care team you act in", choices=team_choices))
        return Form("rules:add", "New alert rule", tuple(inputs), "Add")
    return Form(f"rules:edit:{rule.id}", f"Edit rule #{rule.id}"[:24], tuple(inputs))


def _clock(rule: RuleRow | None) -> str:
    if rule is None or rule.quiet_start is None or rule.quiet_end is None:
        return ""
    return f"{rule.quiet_start:%H:%M}-{rule.quiet_end:%H:%M}"
