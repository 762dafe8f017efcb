"""/help, generated from the command definitions: what the invoker may use, with usage."""

from __future__ import annotations

from collections.abc import Iterable

from bot.commands.base import CommandContext, Field, Reply
from bot.commands.registry import Access, CommandDef


def help_reply(commands: Iterable[CommandDef], ctx: CommandContext) -> Reply:
    linked = ctx.invocation.user_id is not None
    fields = tuple(Field(c.usage, c.summary) for c in commands if linked or c.access is Access.ANYONE)
    note = None if linked else "Link your CareBeacon account with /connect to use the other commands."
    return Reply("CareBeacon commands", fields=fields, context=note)
