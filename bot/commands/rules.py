"""/rules: list, add, edit, pause, resume and delete alert rules, with typed ``key=value`` forms.

A chat user manages the rules they own (``owner_user_id``) and those of care teams in which
they act (clinician, nurse, coach); tenant-wide rules stay with the API.  Validation errors
come back inline, naming the key.
"""

from __future__ import annotations

import re
from datetime import time
from typing import Any

import asyncpg

from bot.commands.access import disclose, subject
from bot.commands.base import CommandContext, Denied, Field, Reply, UsageError
from db import notification_rules
from db.alerts import SEVERITIES
from db.care_teams import ACTING_ROLES

ADD_KEYS = ("name", "channel", "severity", "patient", "team", "categories", "metrics", "quiet")
EDIT_KEYS = ("name", "severity", "categories", "metrics", "quiet")
_QUIET = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")

# The rules a user may manage: their own, or of a team they act in.
_MANAGEABLE = (
    "r.tenant_id = $1 AND (r.owner_user_id = $2 OR r.care_team_id IN ("
    " SELECT care_team_id FROM care_team_members WHERE user_id = $2 AND role = ANY($3::text[])))"
)


async def rules(ctx: CommandContext) -> Reply:
    args = ctx.invocation.args
    verb = args[0].lower() if args else "list"
    if verb == "list":
        return await _list(ctx)
    if verb in ("pause", "resume", "delete"):
        if len(args) != 2 or not args[1].isdigit():
            raise UsageError(f"/rules {verb} RULE_ID")
        return await _change(ctx, verb, int(args[1]))
    if verb == "add":
        return await _add(ctx, _form(args[1:], ADD_KEYS))
    if verb == "edit":
        if len(args) < 3 or not args[1].isdigit():
            raise UsageError("/rules edit RULE_ID key=value …")
        return await _edit(ctx, int(args[1]), _form(args[2:], EDIT_KEYS))
    raise UsageError(f"Unknown action {verb!r}: list, add, edit, pause, resume or delete.")


async def _list(ctx: CommandContext) -> Reply:
    async with ctx.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT r.id, r.name, r.enabled, r.min_severity, t.name AS team,"
            " (SELECT string_agg(c.kind || ' ' || c.label, ', ') FROM notification_rule_channels rc"
            "   JOIN notification_channels c ON c.id = rc.channel_id WHERE rc.rule_id = r.id) AS channels"
            f" FROM notification_rules r LEFT JOIN care_teams t ON t.id = r.care_team_id WHERE {_MANAGEABLE}"
            " ORDER BY r.id LIMIT 25",
            ctx.tenant_id,
            ctx.invocation.user_id,
            list(ACTING_ROLES),
        )
        await disclose(ctx, conn, "chat.rules_listed", subject_type="user", subject_id=ctx.invocation.user_id,
                       ephemeral=True)  # fmt: skip
    if not rows:
        return Reply(
            "Your alert rules", ("None you can manage. Add one: /rules add name=… channel=ID severity=warning",)
        )
    fields = tuple(
        Field(
            f"#{r['id']} {r['name']}" + ("" if r["enabled"] else " (paused)"),
            f"{r['min_severity']}+ → {r['channels'] or 'no channel'}" + (f" · team {r['team']}" if r["team"] else ""),
        )
        for r in rows
    )
    return Reply("Your alert rules", fields=fields, context="/rules pause|resume|delete ID · /rules edit ID key=value")


async def _change(ctx: CommandContext, verb: str, rule_id: int) -> Reply:
    async with ctx.pool.acquire() as conn, conn.transaction():
        await _manageable(ctx, conn, rule_id)
        if verb == "delete":
            await conn.execute("DELETE FROM notification_rules WHERE id = $1", rule_id)
        else:
            await conn.execute("UPDATE notification_rules SET enabled = $2 WHERE id = $1", rule_id, verb == "resume")
        await disclose(ctx, conn, f"chat.rule_{verb}d", subject_type="notification_rule", subject_id=rule_id,
                       ephemeral=True)  # fmt: skip
    done = {"pause": "paused", "resume": "resumed", "delete": "deleted"}[verb]
    return Reply(f"Rule #{rule_id} {done}")


async def _add(ctx: CommandContext, form: dict[str, str]) -> Reply:
    for key in ("name", "channel"):
        if key not in form:
            raise UsageError(f"{key}= is required: /rules add name=… channel=ID [severity=…]")
    if not form["channel"].isdigit():
        raise UsageError("channel= takes a channel id (an integer).")
    values = _values(form)
    async with ctx.pool.acquire() as conn, conn.transaction():
        team_id = await _team(ctx, conn, form["team"]) if "team" in form else None
        patient_id = (await subject(ctx, conn, form["patient"]))[0] if "patient" in form else None
        owner = None if team_id is not None else ctx.invocation.user_id
        try:
            rule_id = await notification_rules.create_rule(
                conn, tenant_id=ctx.tenant_id, name=form["name"], channel_id=int(form["channel"]),
                owner_user_id=owner, care_team_id=team_id, patient_id=patient_id, **values,
            )  # fmt: skip
        except ValueError:
            raise UsageError(f"channel={form['channel']}: no such channel in your organisation.") from None
        await disclose(ctx, conn, "chat.rule_added", subject_type="notification_rule", subject_id=rule_id,
                       ephemeral=True)  # fmt: skip
    return Reply(f"Rule #{rule_id} added", (f"“{form['name']}” is on.",))


async def _edit(ctx: CommandContext, rule_id: int, form: dict[str, str]) -> Reply:
    values = _values(form)
    quiet = values.pop("quiet_hours", (None, None)) if "quiet" in form else None
    async with ctx.pool.acquire() as conn, conn.transaction():
        await _manageable(ctx, conn, rule_id)
        await conn.execute(
            "UPDATE notification_rules SET name = coalesce($2, name), min_severity = coalesce($3, min_severity),"
            " categories = CASE WHEN $4 THEN $5 ELSE categories END, metrics = CASE WHEN $6 THEN $7 ELSE metrics END,"
            " quiet_start = CASE WHEN $8 THEN $9 ELSE quiet_start END,"
            " quiet_end = CASE WHEN $8 THEN $10 ELSE quiet_end END"
            " WHERE id = $1",
            rule_id, form.get("name"), values.get("min_severity"), "categories" in form, values.get("categories"),
            "metrics" in form, values.get("metrics"), quiet is not None, quiet[0] if quiet else None,
            quiet[1] if quiet else None,
        )  # fmt: skip
        await disclose(ctx, conn, "chat.rule_edited", subject_type="notification_rule", subject_id=rule_id,
                       ephemeral=True, details={"keys": sorted(form)})  # fmt: skip
    return Reply(f"Rule #{rule_id} updated", (", ".join(f"{k}={v}" for k, v in sorted(form.items())),))


def _form(words: tuple[str, ...], allowed: tuple[str, ...]) -> dict[str, str]:
    """``key=value`` words into a dict; an unknown key or a bare word is a usage error."""
    form: dict[str, str] = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or key not in allowed:
            raise UsageError(f"{word!r}: expected key=value with key one of {', '.join(allowed)}.")
        form[key] = value
    return form


def _values(form: dict[str, str]) -> dict[str, Any]:
    """Typed values for create_rule/UPDATE; raises UsageError naming the key."""
    values: dict[str, Any] = {}
    if "severity" in form:
        if form["severity"] not in SEVERITIES:
            raise UsageError(f"severity= must be one of {', '.join(SEVERITIES)}.")
        values["min_severity"] = form["severity"]
    for key in ("categories", "metrics"):
        if key in form:
            values[key] = [v for v in form[key].split(",") if v] or None
    if "quiet" in form:
        if form["quiet"] in ("", "off"):
            values["quiet_hours"] = None
        else:
            found = _QUIET.match(form["quiet"])
            try:
                if found is None:
                    raise ValueError
                h1, m1, h2, m2 = (int(g) for g in found.groups())
                values["quiet_hours"] = (time(h1, m1), time(h2, m2))
            except ValueError:
                raise UsageError("quiet= takes HH:MM-HH:MM (e.g. 22:00-07:00) or off.") from None
    return values


async def _manageable(ctx: CommandContext, conn: asyncpg.Connection, rule_id: int) -> None:
    found = await conn.fetchval(
        f"SELECT 1 FROM notification_rules r WHERE r.id = $4 AND {_MANAGEABLE} FOR UPDATE",
        ctx.tenant_id,
        ctx.invocation.user_id,
        list(ACTING_ROLES),
        rule_id,
    )
    if found is None:
        raise Denied(f"No rule #{rule_id} that you may change.")


async def _team(ctx: CommandContext, conn: asyncpg.Connection, name: str) -> int:
    team_id: int | None = await conn.fetchval(
        "SELECT t.id FROM care_teams t JOIN care_team_members m ON m.care_team_id = t.id"
        " WHERE t.tenant_id = $1 AND t.name = $2 AND m.user_id = $3 AND m.role = ANY($4::text[])",
        ctx.tenant_id,
        name,
        ctx.invocation.user_id,
        list(ACTING_ROLES),
    )
    if team_id is None:
        raise Denied(f"No care team {name!r} in which you may add rules.")
    return team_id
