"""Command definitions and the dispatcher: resolve, authorise, run, audit.

Every command is one ``CommandDef``; ``/help`` and Discord's command registration are built
from the same definitions, so what a user is told matches what runs.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

import asyncpg

from bot.chat.callers import Callers
from bot.commands.base import ChatIdentity, CommandContext, CommandError, Invocation, Reply, UsageError
from bot.commands.forms import Submitted
from db import audit
from db.sealing import Keyring

log = logging.getLogger(__name__)

Handler = Callable[[CommandContext], Awaitable[Reply]]
SubmitHandler = Callable[[CommandContext, str, dict[str, str]], Awaitable[Submitted]]


class Access(StrEnum):
    """Who may run a command.  The finer check (whose data) is the handler's, on every call."""

    ANYONE = "anyone"  # linked or not: /help, /connect
    LINKED = "linked"  # a chat identity linked to a user of the workspace's tenant


@dataclass(frozen=True, slots=True)
class Param:
    """One argument, in order.  ``choices`` makes it an enum (a Discord choice list)."""

    name: str
    description: str
    required: bool = False
    choices: tuple[str, ...] = ()
    rest: bool = False  # takes the remaining words (free text, ``key=value`` lists)


@dataclass(frozen=True, slots=True)
class CommandDef:
    name: str
    summary: str  # ≤ 100 characters: Discord's limit for a description
    params: tuple[Param, ...]
    access: Access
    handler: Handler
    examples: tuple[str, ...] = ()
    # What takes a form's submission (form id, values by input key), for a command that opens one.
    submit: SubmitHandler | None = None

    @property
    def usage(self) -> str:
        parts = [f"/{self.name}"]
        for p in self.params:
            shown = "|".join(p.choices) if p.choices else p.name
            shown = f"{shown}…" if p.rest else shown
            parts.append(f"<{shown}>" if p.required else f"[{shown}]")
        return " ".join(parts)


async def resolve(
    callers: Callers,
    identity: ChatIdentity,
    command: str,
    args: tuple[str, ...],
    *,
    response_url: str | None = None,
    channel_id: str | None = None,
    request_id: str = "",
) -> Invocation:
    """An Invocation with the workspace's tenant and the identity's link as they are now (kept only
    while every change is heard: a revoked link stops working once its notification arrives).  A
    link made in another tenant counts as none."""
    tenant_id, user_id = await callers.caller(identity.platform, identity.workspace_id, identity.user_id)
    return Invocation(command, args, identity, tenant_id, user_id, response_url, channel_id, request_id)


async def dispatch(
    commands: dict[str, CommandDef], invocation: Invocation, pool: asyncpg.Pool, keyring: Keyring, public_url: str
) -> Reply:
    """Run the invocation's command and return its reply; never raises for a user's mistake.

    Refusals (unknown command, unbound workspace, unlinked identity, a denied subject) come
    back as ephemeral replies, and denials are audited."""
    found = commands.get(invocation.command)
    if found is None:
        return Reply("Unknown command", (f"There is no /{invocation.command}. Try /help.",))
    ctx = CommandContext(invocation, pool, keyring, public_url)
    refused = await _refused(found, ctx)
    if refused is not None:
        return refused
    if len([p for p in found.params if p.required]) > len(invocation.args):
        return usage(found, "Missing argument.")
    try:
        return await found.handler(ctx)
    except UsageError as exc:
        return usage(found, exc.message)
    except CommandError as exc:
        return await _refusal(ctx, exc)


async def dispatch_submit(
    commands: dict[str, CommandDef], invocation: Invocation, pool: asyncpg.Pool, keyring: Keyring, public_url: str,
    form_id: str, values: dict[str, str],
) -> Submitted:  # fmt: skip
    """A form's submission to the command its id names (``rules:…``), authorised and audited as
    the typed command is; never raises for a user's mistake."""
    found = commands.get(form_id.partition(":")[0])
    if found is None or found.submit is None:
        return Submitted(Reply("Unknown form", ("This form is not one of ours.",)))
    ctx = CommandContext(invocation, pool, keyring, public_url)
    refused = await _refused(found, ctx)
    if refused is not None:
        return Submitted(refused)
    try:
        return await found.submit(ctx, form_id, values)
    except CommandError as exc:
        return Submitted(await _refusal(ctx, exc))


async def _refused(found: CommandDef, ctx: CommandContext) -> Reply | None:
    """The refusal for an unbound workspace or an unlinked identity (audited), else None."""
    if ctx.invocation.tenant_id is None:
        return Reply(
            "This workspace is not set up",
            ("This Slack workspace or Discord server is not connected to a CareBeacon organisation."
             " Ask your CareBeacon administrator to bind it.",),
        )  # fmt: skip
    if found.access is Access.LINKED and ctx.invocation.user_id is None:
        await _audit_denied(ctx, "not linked")
        return Reply(
            "Link your account first",
            (f"/{found.name} needs a linked CareBeacon account. Type /connect to get a one-time link.",),
        )
    return None


async def _refusal(ctx: CommandContext, exc: CommandError) -> Reply:
    if exc.audit_as is not None:
        await _audit_denied(ctx, exc.message, action=exc.audit_as)
    return Reply("Not allowed" if exc.audit_as else "Could not do that", (exc.message,))


def usage(command: CommandDef, problem: str) -> Reply:
    return Reply(f"/{command.name}: {problem}", (f"Usage: {command.usage}", *command.examples[:2]))


async def _audit_denied(ctx: CommandContext, reason: str, action: str = "chat.denied") -> None:
    inv = ctx.invocation
    async with ctx.pool.acquire() as conn:
        await audit.record(
            conn, tenant_id=inv.tenant_id, actor=actor(inv), action=action, subject_type="chat_command",
            subject_id=None, details={"command": inv.command, "reason": reason, "chat_identity": inv.identity.label},
        )  # fmt: skip


def actor(inv: Invocation) -> str:
    """The audit actor: the CareBeacon user when linked, else the bare chat identity."""
    return f"user:{inv.user_id}" if inv.user_id is not None else inv.identity.label
