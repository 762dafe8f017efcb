"""A Reply as a Slack message: Block Kit (header, sections, fields, image, actions, context).

Pure: no I/O.  Limits from Slack's reference: 50 blocks, header 150 characters, section text
3000, 10 fields of 2000, button text 75, ``value``/``action_id`` ≤ 255/2000.

The /score chart goes in an image block whose ``image_url`` is our own short-lived chart URL.
Slack's alternative, ``files_upload_v2``, shares the file to a channel, which would show a
patient's trend to everyone in it; an ephemeral reply cannot carry an upload.
"""

from __future__ import annotations

from typing import Any

from bot.commands import Reply

Block = dict[str, Any]


def message(reply: Reply, **extra: Any) -> dict[str, Any]:
    """Keyword arguments for ``respond()``/``chat.postMessage``: text, blocks, response_type."""
    kind = "ephemeral" if reply.ephemeral else "in_channel"
    return {"text": escape(reply.fallback), "blocks": blocks(reply), "response_type": kind, **extra}


def blocks(reply: Reply) -> list[Block]:
    found: list[Block] = [{"type": "header", "text": _plain(reply.title, 150)}]
    found += [{"type": "section", "text": _mrkdwn(s, 3000)} for s in reply.sections if s]
    fields = [_mrkdwn(f"*{f.label}*\n{f.value}", 2000) for f in reply.fields]
    found += [{"type": "section", "fields": fields[i : i + 10]} for i in range(0, len(fields), 10)]
    if reply.image is not None:
        found.append({"type": "image", "image_url": reply.image.url, "alt_text": reply.image.alt[:2000]})
    elements: list[Block] = []
    for button in reply.buttons:
        element: Block = {
            "type": "button",
            "action_id": button.action.value,
            "value": button.custom_id,
            "text": _plain(button.label, 75),
        }
        if button.danger:
            element["style"] = "danger"
            element["confirm"] = {
                "title": _plain("Are you sure?", 100),
                "text": _plain(f"{button.label} this alert?", 300),
                "confirm": _plain(button.label, 30),
                "deny": _plain("Cancel", 30),
            }
        elements.append(element)
    for index, link in enumerate(reply.links):
        elements.append(
            {"type": "button", "action_id": f"link-{index}", "url": link.url, "text": _plain(link.label, 75)}
        )
    if elements:
        found.append({"type": "actions", "elements": elements[:25]})
    if reply.context:
        found.append({"type": "context", "elements": [_mrkdwn(reply.context, 3000)]})
    return found[:50]


def escape(text: str) -> str:
    """Slack's three control characters; ``*bold*`` stays mrkdwn."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _plain(text: str, limit: int) -> Block:
    return {"type": "plain_text", "text": text[:limit], "emoji": True}


def _mrkdwn(text: str, limit: int) -> Block:
    return {"type": "mrkdwn", "text": escape(text)[:limit]}
