"""Discord application commands built from the core's ``COMMANDS``, for a bulk overwrite.

Each command is a guild-only CHAT_INPUT command (tenancy is per guild, so a command in a DM
would have no tenant); each parameter a STRING option, with choices where it has them.
Discord's limits: names ``^[-_a-z0-9]{1,32}$``, descriptions 1–100 characters, ≤ 25 options,
≤ 25 choices, required options before optional ones.  A definition that breaks one raises
ValueError here rather than a 400 from Discord.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from bot.commands import CommandDef

Json = dict[str, Any]
CHAT_INPUT, STRING = 1, 3
GUILD = 0  # interaction context type: a server channel
GUILD_INSTALL = 0  # integration type: installed to a server
_NAME = re.compile(r"^[-_a-z0-9]{1,32}$")


def application_commands(definitions: Iterable[CommandDef]) -> list[Json]:
    return [_command(d) for d in definitions]


def _command(definition: CommandDef) -> Json:
    options = [_option(definition.name, p.name, p.description, p.required, p.choices) for p in definition.params]
    if len(options) > 25:
        raise ValueError(f"/{definition.name}: more than 25 options")
    required = [o["required"] for o in options]
    if required != sorted(required, reverse=True):
        raise ValueError(f"/{definition.name}: required options must come first")
    return {
        "name": _name(definition.name),
        "type": CHAT_INPUT,
        "description": _description(definition.name, definition.summary.replace("`", "")),
        "options": options,
        "contexts": [GUILD],
        "integration_types": [GUILD_INSTALL],
    }


def _option(command: str, name: str, description: str, required: bool, choices: tuple[str, ...]) -> Json:
    if len(choices) > 25:
        raise ValueError(f"/{command} {name}: more than 25 choices")
    option: Json = {
        "type": STRING,
        "name": _name(name),
        "description": _description(f"{command} {name}", description),
        "required": required,
    }
    if choices:
        option["choices"] = [{"name": c, "value": c} for c in choices]
    return option


def _name(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"{name!r} is not a valid Discord command or option name")
    return name


def _description(what: str, text: str) -> str:
    if not 1 <= len(text) <= 100:
        raise ValueError(f"{what}: a description must be 1 to 100 characters")
    return text
