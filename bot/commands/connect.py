"""/connect: link the chat account, list wearables, hand out a one-time connect link, revoke.

Every link here points at our own origin (``/chat/link``, ``/connect/start``) and is ephemeral;
a provider's authorize URL never goes into chat (reference §4.2).
"""

from __future__ import annotations

import asyncpg

from bot.commands.access import disclose
from bot.commands.base import CommandContext, Field, Link, Reply, UsageError
from bot.web.apple_health import UPLOAD_PAGES
from db import chat, connect_links, events
from pipeline.providers import PROVIDERS

# Providers a person links through the browser; the simulator and push-only sources are not.
_HIDDEN = {"simulator", "ingest"}
# What people type for a provider whose id is longer.
_ALIASES = {"apple": "apple_health"}


async def connect(ctx: CommandContext) -> Reply:
    args = ctx.invocation.args
    if ctx.invocation.user_id is None:
        return await _link_account(ctx)
    if not args:
        return await _list(ctx)
    if args[0] == "revoke":
        if len(args) != 2:
            raise UsageError("Say which provider to disconnect: /connect revoke oura")
        return await _revoke(ctx, _provider(args[1]))
    if len(args) != 1:
        raise UsageError("One provider at a time.")
    return await _start(ctx, _provider(args[0]))


def _provider(name: str) -> str:
    name = _ALIASES.get(name.lower(), name.lower())
    if name not in PROVIDERS or name in _HIDDEN:
        known = ", ".join(sorted(set(PROVIDERS) - _HIDDEN))
        raise UsageError(f"Unknown provider {name!r}. Known: {known}.")
    return name


async def _link_account(ctx: CommandContext) -> Reply:
    inv = ctx.invocation
    async with ctx.pool.acquire() as conn:
        token = await chat.create_link_token(
            conn,
            platform=inv.identity.platform,
            workspace_id=inv.identity.workspace_id,
            chat_user_id=inv.identity.user_id,
            tenant_id=ctx.tenant_id,
        )
        await disclose(ctx, conn, "chat.link_offered", subject_type="chat_identity", subject_id=None, ephemeral=True)
    return Reply(
        "Link your CareBeacon account",
        ("Open this one-time link within 10 minutes. It asks for the enrolment code your care team gave you,"
         " then for you to sign in to this chat platform, so it only works for you. Do not share it.",),
        links=(Link("Link my account", f"{ctx.public_url}/chat/link?token={token}"),),
    )  # fmt: skip


async def _list(ctx: CommandContext) -> Reply:
    async with ctx.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT provider, status, last_synced_at FROM connections WHERE user_id = $1", ctx.invocation.user_id
        )
        await disclose(ctx, conn, "chat.connections_listed", subject_type="user",
                       subject_id=ctx.invocation.user_id, ephemeral=True)  # fmt: skip
    mine = {r["provider"]: r for r in rows}
    fields = []
    for provider in sorted(set(PROVIDERS) - _HIDDEN):
        row = mine.get(provider)
        if row is not None:
            synced = f", last sync {row['last_synced_at']:%Y-%m-%d %H:%M} UTC" if row["last_synced_at"] else ""
            state = f"{row['status']}{synced}"
        else:
            state = "not connected" if PROVIDERS[provider].available else "not offered here"
        fields.append(Field(PROVIDERS[provider].display_name, state))
    return Reply(
        "Your wearables",
        ("/connect PROVIDER gives you a one-time link to connect one; /connect revoke PROVIDER disconnects.",),
        fields=tuple(fields),
    )


async def _start(ctx: CommandContext, provider: str) -> Reply:
    if not PROVIDERS[provider].available:
        return Reply(
            f"{PROVIDERS[provider].display_name} is not offered here", (PROVIDERS[provider].unavailable_reason or "",)
        )
    async with ctx.pool.acquire() as conn:
        token = await connect_links.create(conn, _user(ctx), provider)
        await disclose(ctx, conn, "chat.connect_link_issued", subject_type="user", subject_id=_user(ctx),
                       ephemeral=True, details={"provider": provider})  # fmt: skip
    name = PROVIDERS[provider].display_name
    if provider in UPLOAD_PAGES:
        return Reply(
            f"Import {name}",
            ("On your iPhone, open Health, tap your picture, then Export All Health Data. This one-time link"
             " opens a page to upload the export.zip it makes. It works once, for 15 minutes. Do not share it.",),
            links=(Link(f"Upload my {name} export", f"{ctx.public_url}{UPLOAD_PAGES[provider]}?token={token}"),),
        )  # fmt: skip
    return Reply(
        f"Connect {name}",
        (f"This one-time link opens CareBeacon, which sends you on to {name} to approve access."
         " It works once, for 15 minutes. Do not share it.",),
        links=(Link(f"Connect {name}", f"{ctx.public_url}/connect/start?token={token}"),),
    )  # fmt: skip


async def _revoke(ctx: CommandContext, provider: str) -> Reply:
    user_id = _user(ctx)
    async with ctx.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "SELECT id, status FROM connections WHERE user_id = $1 AND provider = $2 FOR UPDATE", user_id, provider
        )
        if row is None or row["status"] == "revoked":
            return Reply(f"{PROVIDERS[provider].display_name} is not connected")
        await _disconnect(conn, ctx.tenant_id, row["id"], user_id, provider)
        await disclose(ctx, conn, "chat.connection_revoked", subject_type="connection", subject_id=row["id"],
                       ephemeral=True, details={"provider": provider})  # fmt: skip
    return Reply(f"{PROVIDERS[provider].display_name} disconnected", ("Its tokens are deleted; no more data is read.",))


async def _disconnect(
    conn: asyncpg.Connection, tenant_id: int, connection_id: int, user_id: int, provider: str
) -> None:
    # The same change as DELETE /v1/users/{u}/connections/{c}: revoked, tokens wiped, an event.
    await conn.execute(
        "UPDATE connections SET status = 'revoked', status_reason = 'disconnected from chat',"
        " tokens_sealed = NULL, updated_at = now() WHERE id = $1",
        connection_id,
    )
    data = {"connection_id": connection_id, "user_id": user_id, "provider": provider}
    await events.publish(conn, tenant_id, events.CONNECTION_DISCONNECTED, data)


def _user(ctx: CommandContext) -> int:
    assert ctx.invocation.user_id is not None
    return ctx.invocation.user_id
