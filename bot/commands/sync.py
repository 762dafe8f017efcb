"""/sync [provider]: start a sync of the invoker's wearables now; the result follows later.

The reply only says the runs are queued (the 3-second rule).  The runs go through Dramatiq
(``pipeline.triggers.request_sync``: the row first, then the message); a ``chat_followup``
actor waits for them and posts rows stored, duration and errors to the response URL.
"""

from __future__ import annotations

from bot.commands.access import disclose
from bot.commands.base import CommandContext, Reply, UsageError
from db import chat, ingest
from pipeline import actors, triggers
from pipeline.providers import PROVIDERS


async def sync(ctx: CommandContext) -> Reply:
    inv = ctx.invocation
    provider = inv.args[0].lower() if inv.args else None
    if provider is not None and provider not in PROVIDERS:
        raise UsageError(f"Unknown provider {provider!r}.")
    async with ctx.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT c.id, c.provider, (SELECT r.id FROM sync_runs r WHERE r.connection_id = c.id"
            "   AND r.status IN ('pending', 'running') ORDER BY r.id DESC LIMIT 1) AS open_run"
            " FROM connections c WHERE c.user_id = $1 AND c.status = 'active' AND c.provider <> $2"
            " AND ($3::text IS NULL OR c.provider = $3) ORDER BY c.id",
            inv.user_id,
            ingest.PROVIDER,
            provider,
        )
    if not rows:
        what = f"no active {provider} connection" if provider else "no active wearable connections"
        return Reply("Nothing to sync", (f"You have {what}. Type /connect to link one.",))
    # A run already waiting for a worker serves this request too: no second run.
    run_ids = [r["open_run"] or await triggers.request_sync(ctx.pool, r["id"], "manual") for r in rows]
    async with ctx.pool.acquire() as conn:
        await disclose(ctx, conn, "chat.sync_requested", subject_type="user", subject_id=inv.user_id,
                       ephemeral=True, details={"sync_run_ids": run_ids})  # fmt: skip
        followup = None
        if inv.response_url is not None:
            followup = await chat.create_followup(
                conn, ctx.keyring, platform=inv.identity.platform, tenant_id=ctx.tenant_id,
                target=inv.response_url, run_ids=run_ids,
            )  # fmt: skip
    if followup is not None:
        triggers.enqueue(actors.chat_followup, followup)
    names = ", ".join(
        PROVIDERS[r["provider"]].display_name if r["provider"] in PROVIDERS else r["provider"] for r in rows
    )
    return Reply("Sync started", (f"Syncing {names}. The result will follow here when it is done.",))
