"""A Reply as a Discord message: one embed (title, description, fields, colour, footer, image),
buttons as components, and the PNG as an attachment; a Form as a modal.  Pure: no I/O.

Limits from Discord's reference: embed title 256, description 4096, 25 fields of name 256 and
value 1024, footer 2048, 6000 characters in all; 5 action rows of 5 buttons; label 80,
``custom_id`` 100.  ``allowed_mentions`` is always empty: nothing we echo can ping anyone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from bot.commands import Action, Form, Reply
from bot.commands.forms import DISCORD_INPUTS
from bot.discord.interaction import EPHEMERAL

Json = dict[str, Any]
CHART = "trend.png"
BRAND, RED, AMBER, BLUE = 0x5865F2, 0xE74C3C, 0xF39C12, 0x3498DB
_SEVERITY = {"CRITICAL": RED, "WARNING": AMBER, "INFO": BLUE}
_BOLD = re.compile(r"(?<![*\w])\*([^*\n]+)\*(?![*\w])")
# Button styles: 1 primary, 2 secondary, 4 danger, 5 link.
_STYLE = {Action.ACK: 1, Action.RESOLVE: 4}


@dataclass(frozen=True, slots=True)
class Message:
    """The JSON of a message (``payload_json`` when there is a file) and the file to attach."""

    payload: Json
    png: bytes | None = field(default=None, repr=False)


def message(reply: Reply, *, ephemeral: bool | None = None) -> Message:
    """``ephemeral`` overrides the Reply's (a deferred reply keeps what the defer chose)."""
    embed: Json = {"title": _clip(reply.title, 256), "color": colour(reply)}
    description = "\n\n".join(bold(s) for s in reply.sections if s)
    if description:
        embed["description"] = _clip(description, 4096)
    if reply.fields:
        embed["fields"] = [
            {"name": _clip(bold(f.label).replace("**", ""), 256), "value": _clip(bold(f.value) or "-", 1024),
             "inline": len(f.value) <= 40}
            for f in reply.fields[:25]
        ]  # fmt: skip
    if reply.context:
        embed["footer"] = {"text": _clip(reply.context.replace("*", ""), 2048)}
    payload: Json = {"embeds": [embed], "components": components(reply), "allowed_mentions": {"parse": []}}
    if ephemeral if ephemeral is not None else reply.ephemeral:
        payload["flags"] = EPHEMERAL
    png = None
    if reply.image is not None:
        embed["image"] = {"url": f"attachment://{CHART}"}
        payload["attachments"] = [{"id": 0, "filename": CHART, "description": _clip(reply.image.alt, 1024)}]
        png = reply.image.png
    return Message(payload, png)


def components(reply: Reply) -> list[Json]:
    """Action rows: alert buttons (``custom_id`` = the core's ``Button.custom_id``), then links."""
    buttons: list[Json] = [
        {"type": 2, "style": _STYLE.get(b.action, 2), "label": _clip(b.label, 80), "custom_id": b.custom_id}
        for b in reply.buttons
    ]
    buttons += [{"type": 2, "style": 5, "label": _clip(link.label, 80), "url": link.url} for link in reply.links]
    return [{"type": 1, "components": buttons[i : i + 5]} for i in range(0, min(len(buttons), 25), 5)]


def modal(form: Form) -> Json:
    """The data of a MODAL response (type 9): title ≤ 45, ``custom_id`` ≤ 100, and the form's
    first five inputs as short text inputs (type 4), one per action row: label ≤ 45,
    placeholder ≤ 100, value and max_length ≤ 4000.  Choices are named in the placeholder."""
    rows = []
    for one in form.inputs[:DISCORD_INPUTS]:
        text: Json = {"type": 4, "custom_id": one.key, "style": 1, "label": _clip(one.label, 45),
                      "required": one.required, "max_length": min(one.max_length, 4000)}  # fmt: skip
        if one.hint:
            text["placeholder"] = _clip(one.hint, 100)
        if one.value:
            text["value"] = one.value[: text["max_length"]]
        rows.append({"type": 1, "components": [text]})
    return {"custom_id": _clip(form.form_id, 100), "title": _clip(form.title, 45), "components": rows}


def colour(reply: Reply) -> int:
    """An alert card's severity colour; red for a refusal; else the brand's."""
    head = reply.title.split(":", 1)[0]
    if head in _SEVERITY:
        return _SEVERITY[head]
    return RED if reply.title == "Not allowed" else BRAND


def bold(text: str) -> str:
    """The core's ``*bold*`` as Discord's ``**bold**``."""
    return _BOLD.sub(r"**\1**", text)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
