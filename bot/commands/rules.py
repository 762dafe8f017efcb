"""/rules: list, add, edit, pause, resume and delete alert rules, with typed ``key=value`` words or
a form (``/rules add`` and ``/rules edit ID`` alone open a modal); list the channels they send to.

A chat user manages the rules they own (``owner_user_id``) and those of care teams in which
they act (clinician, nurse, coach); tenant-wide rules stay with the API.  Both ways run the
same validation (``bot.commands.rule_form.check``); its errors come back inline, naming the key.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from bot.commands import rule_form
from bot.commands.access import disclose, subject
from bot.commands.base import CommandContext, Denied, Field, Reply, UsageError
from bot.commands.forms import Submitted, rejected
from db import notification_rules
from db.care_teams import ACTING_ROLES
from db.notification_channels import tenant_channels

# The rules a user may manage: their own, or of a team they act in.
_MANAGEABLE = (
    "r.tenant_id = $1 AND (r.owner_user_id = $2 OR r.care_team_id IN ("
    " SELECT care_team_id FROM care_team_members WHERE user_id = $2 AND role = ANY($3::text[])))"
)
_COLUMNS = {"name": "name", "min_severity": "min_severity", "metrics": "metrics", "categories": "categories",
            "cooldown": "cooldown"}  # fmt: skip


async def rules(ctx: CommandContext) -> Reply:
    args = ctx.invocation.args
    verb = args[0].lower() if args else "list"
    if verb == "list":
        return await _list(ctx)
    if verb == "channels":
        return await _channels(ctx)
    if verb in ("pause", "resume", "delete"):
        if len(args) != 2:
            raise UsageError(f"/rules {verb} RULE_ID")
        return await _change(ctx, verb, _rule_id(args[1]))
    if verb == "add":
        if len(args) == 1:
            return await _form(ctx, None)
        return await _save(ctx, None, _typed(args[1:], rule_form.ADD_KEYS))
    if verb == "edit":
        if len(args) < 2:
            raise UsageError("/rules edit RULE_ID [key=value …]")
        if len(args) == 2:
            return await _form(ctx, _rule_id(args[1]))
        return await _save(ctx, _rule_id(args[1]), _typed(args[2:], rule_form.EDIT_KEYS))
    raise UsageError(f"Unknown action {verb!r}: list, channels, add, edit, pause, resume or delete.")


async def submit(ctx: CommandContext, form_id: str, values: dict[str, str]) -> Submitted:
    """A rules form sent back: ``rules:add`` or ``rules:edit:ID``, validated as typed words are."""
    _, verb, raw_id = (form_id.split(":") + ["", ""])[:3]
    if verb not in ("add", "edit") or (verb == "edit" and not raw_id.isdigit()):
        return Submitted(Reply("Unknown form", ("This form is not one of ours. Type /rules to start again.",)))
    allowed = rule_form.ADD_KEYS if verb == "add" else rule_form.EDIT_KEYS
    form = {k: v for k, v in values.items() if k in allowed}
    try:
        return Submitted(await _save(ctx, _rule_id(raw_id) if verb == "edit" else None, form, via="form"))
    except _Invalid as exc:
        return rejected(rule_form.LABELS, exc.errors)


async def _list(ctx: CommandContext) -> Reply:
    async with ctx.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT r.id, r.name, r.enabled, r.min_severity, t.name AS team,"
            " (SELECT string_agg('#' || c.id || ' ' || c.kind || ' ' || c.label, ', ' ORDER BY c.id)"
            "   FROM notification_rule_channels rc"
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
            "Your alert rules", ("None you can manage. Add one: /rules add (a form), or /rules channels for ids.",)
        )
    fields = tuple(
        Field(
            f"#{r['id']} {r['name']}" + ("" if r["enabled"] else " (paused)"),
            f"{r['min_severity']}+ → {r['channels'] or 'no channel'}" + (f" · team {r['team']}" if r["team"] else ""),
        )
        for r in rows
    )
    return Reply("Your alert rules", fields=fields, context="/rules pause|resume|delete ID · /rules edit ID key=value")


async def _channels(ctx: CommandContext) -> Reply:
    """The tenant's channels a rule can send to, with the ids the typed form takes.  Labels and
    kinds only: a channel's destination is a sealed secret and never leaves the API."""
    async with ctx.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT id, kind, label, enabled, disabled_reason FROM notification_channels WHERE tenant_id = $1"
            " ORDER BY id LIMIT 25",
            ctx.tenant_id,
        )
        await disclose(ctx, conn, "chat.channels_listed", subject_type="tenant", subject_id=ctx.tenant_id,
                       ephemeral=True)  # fmt: skip
    if not rows:
        return Reply("Alert channels", ("Your organisation has none yet: an administrator adds them over the API.",))
    fields = tuple(
        Field(f"#{r['id']} {r['label']}", r["kind"] + ("" if r["enabled"] else f" (off: {r['disabled_reason']})"))
        for r in rows
    )
    return Reply("Alert channels", fields=fields, context="/rules add name=… channels=ID[,ID] …")


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


def _rule_id(text: str) -> int:
    """A rule id as typed; a UsageError for anything a bigint column cannot hold."""
    if not text.isdigit() or not 0 < int(text) < 2**63:
        raise UsageError(f"{text!r} is not a rule id: /rules lists yours.")
    return int(text)


class _Invalid(UsageError):
    """Values the database refuses (a channel of another tenant), by key."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(_sentence(errors))
        self.errors = errors


def _sentence(errors: dict[str, str]) -> str:
    return " ".join(f"{key}= {message}." for key, message in errors.items())


async def _form(ctx: CommandContext, rule_id: int | None) -> Reply:
    """The add or edit form, as a Reply whose text says how to do it typed where no modal opens."""
    assert ctx.invocation.user_id is not None
    async with ctx.pool.acquire() as conn:
        rule = None
        if rule_id is not None:
            await _manageable(ctx, conn, rule_id)
            rule = await notification_rules.get_rule(conn, ctx.tenant_id, rule_id)
        form = await rule_form.build(conn, ctx.tenant_id, ctx.invocation.user_id, rule)
        # The form shows the rule's settings and the organisation's channel names: a disclosure.
        await disclose(ctx, conn, "chat.rule_form_opened", subject_type="notification_rule", subject_id=rule_id,
                       ephemeral=True)  # fmt: skip
    typed = "/rules add name=… channels=ID …" if rule_id is None else f"/rules edit {rule_id} key=value …"
    return Reply(form.title, (f"Or type it: {typed}",), form=form)


async def _save(ctx: CommandContext, rule_id: int | None, form: dict[str, str], via: str = "typed") -> Reply:
    """Add (``rule_id`` None) or edit a rule from checked strings.  Raises _Invalid (a UsageError
    naming the keys) or Denied."""
    values, errors = rule_form.check(form, adding=rule_id is None)
    if errors:
        raise _Invalid(errors)
    async with ctx.pool.acquire() as conn, conn.transaction():
        if rule_id is not None:
            await _manageable(ctx, conn, rule_id)
        if "channel_ids" in values:
            foreign = set(values["channel_ids"]) - await tenant_channels(conn, ctx.tenant_id, values["channel_ids"])
            if foreign:
                raise _Invalid({"channels": f"no channel {', '.join(map(str, sorted(foreign)))} in your organisation"})
        adding = rule_id is None
        if rule_id is None:
            rule_id = await _insert(ctx, conn, values)
        else:
            await _update(ctx, conn, rule_id, values)
        await disclose(ctx, conn, "chat.rule_added" if adding else "chat.rule_edited", subject_type="notification_rule",
                       subject_id=rule_id, ephemeral=True, details={"keys": sorted(form), "via": via})  # fmt: skip
    detail = ", ".join(f"{k}={v.strip()}" for k, v in sorted(form.items()))
    if adding:
        return Reply(f"Rule #{rule_id} added", (f"“{values['name']}” is on.", detail))
    return Reply(f"Rule #{rule_id} updated", (detail,))


async def _insert(ctx: CommandContext, conn: asyncpg.Connection, values: dict[str, Any]) -> int:
    team_id = await _team(ctx, conn, values["team"]) if "team" in values else None
    patient_id = (await subject(ctx, conn, values["patient"]))[0] if "patient" in values else None
    rule_id: int = await notification_rules.create_rule(
        conn, tenant_id=ctx.tenant_id, name=values["name"], channel_ids=values["channel_ids"],
        owner_user_id=None if team_id is not None else ctx.invocation.user_id, care_team_id=team_id,
        patient_id=patient_id, **{k: values[k] for k in ("min_severity", "metrics", "categories", "quiet_hours",
                                                         "cooldown") if k in values},
    )  # fmt: skip
    return rule_id


async def _update(ctx: CommandContext, conn: asyncpg.Connection, rule_id: int, values: dict[str, Any]) -> None:
    columns = {column: values[key] for key, column in _COLUMNS.items() if key in values}
    if "quiet_hours" in values:
        columns["quiet_start"], columns["quiet_end"] = values["quiet_hours"] or (None, None)
    await notification_rules.update_rule(conn, ctx.tenant_id, rule_id, columns, channel_ids=values.get("channel_ids"))


def _typed(words: tuple[str, ...], allowed: tuple[str, ...]) -> dict[str, str]:
    """``key=value`` words into a dict; an unknown key or a bare word is a usage error."""
    form: dict[str, str] = {}
    for word in words:
        key, sep, value = word.partition("=")
        key = rule_form.ALIASES.get(key, key)
        if not sep or key not in allowed:
            raise UsageError(f"{word!r}: expected key=value with key one of {', '.join(allowed)}.")
        form[key] = value
    return form


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
