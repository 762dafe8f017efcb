"""Whose data a command may show, and the audit row of every disclosure and action.

The care team is the authority (``db.care_teams``), never the chat platform's roles: a
patient sees their own data; anyone else only a patient whose care team they are on.  A
patient of another tenant reads exactly like one that does not exist.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from bot.commands.base import CommandContext, Denied
from bot.commands.registry import actor
from db import audit, care_teams

NOT_VISIBLE = "No patient {!r} that you may see."


async def subject(ctx: CommandContext, conn: asyncpg.Connection, patient: str | None) -> tuple[int, str]:
    """The patient a data command is about, as (user id, display name): the invoker when
    ``patient`` is None, else the tenant's user with that external id (or ``#id``), when the
    invoker may view them.  Raises Denied (audited by the dispatcher)."""
    inv = ctx.invocation
    assert inv.user_id is not None  # Access.LINKED commands only
    if patient is None:
        name: str = await conn.fetchval("SELECT display_name FROM users WHERE id = $1", inv.user_id)
        return inv.user_id, name
    by_id = int(patient[1:]) if patient.startswith("#") and patient[1:].isdigit() else None
    row = await conn.fetchrow(
        "SELECT id, display_name FROM users WHERE tenant_id = $1 AND (external_id = $2 OR id = $3)"
        " ORDER BY external_id = $2 DESC LIMIT 1",
        ctx.tenant_id,
        patient,
        by_id,
    )
    if row is None or not await care_teams.can_view_patient(conn, inv.user_id, row["id"]):
        raise Denied(NOT_VISIBLE.format(patient))
    return row["id"], row["display_name"]


async def disclose(
    ctx: CommandContext,
    conn: asyncpg.Connection,
    action: str,
    *,
    subject_type: str,
    subject_id: int | None,
    ephemeral: bool,
    details: dict[str, Any] | None = None,
) -> None:
    """Audit a disclosure or action made through chat: who (user and chat identity), tenant,
    subject, command and visibility."""
    inv = ctx.invocation
    await audit.record(
        conn,
        tenant_id=inv.tenant_id,
        actor=actor(inv),
        action=action,
        subject_type=subject_type,
        subject_id=subject_id,
        details={
            "command": inv.command,
            "chat_identity": inv.identity.label,
            "channel": inv.channel_id,
            "visibility": "ephemeral" if ephemeral else "in_channel",
            "request_id": inv.request_id,
            **(details or {}),
        },
    )
