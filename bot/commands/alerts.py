"""/alerts [patient]: the patient's open alerts and their latest deliveries (ephemeral)."""

from __future__ import annotations

from bot.commands.access import disclose, subject
from bot.commands.base import CommandContext, Field, Reply, UsageError

SHOWN = 10


async def alerts(ctx: CommandContext) -> Reply:
    args = ctx.invocation.args
    if len(args) > 1:
        raise UsageError("At most one patient.")
    async with ctx.pool.acquire() as conn:
        user_id, name = await subject(ctx, conn, args[0] if args else None)
        rows = await conn.fetch(
            "SELECT id, severity, title, status, created_at, snoozed_until FROM alerts"
            " WHERE user_id = $1 AND status <> 'resolved' ORDER BY id DESC LIMIT $2",
            user_id,
            SHOWN + 1,
        )
        deliveries = await conn.fetch(
            "SELECT l.alert_id, c.kind, c.label, l.status, l.created_at FROM notification_logs l"
            " JOIN notification_channels c ON c.id = l.channel_id JOIN alerts a ON a.id = l.alert_id"
            " WHERE a.user_id = $1 ORDER BY l.id DESC LIMIT 5",
            user_id,
        )
        await disclose(ctx, conn, "chat.alerts_disclosed", subject_type="user", subject_id=user_id, ephemeral=True)
    whose = "Your" if user_id == ctx.invocation.user_id else f"{name}'s"
    if not rows:
        return Reply(f"{whose} open alerts", ("None open.",))
    fields = tuple(
        Field(f"#{r['id']} {r['severity']} · {r['status']}", f"{r['title']} ({r['created_at']:%b %d %H:%M} UTC)")
        for r in rows[:SHOWN]
    )
    sent = [
        f"#{d['alert_id']} → {d['kind']} “{d['label']}”: {d['status']} at {d['created_at']:%b %d %H:%M} UTC"
        for d in deliveries
    ]
    more = f"{SHOWN}+ open; the newest {SHOWN} shown." if len(rows) > SHOWN else None
    sections = ("*Recent deliveries*\n" + "\n".join(sent),) if sent else ()
    return Reply(f"{whose} open alerts", sections, fields=fields, context=more)
