"""A Reply as a Slack message: Block Kit (header, sections, fields, image, actions, context);
a Form as a modal view, and a submitted view's values back as strings.

Pure: no I/O.  Limits from Slack's reference: 50 blocks, header 150 characters, section text
3000, 10 fields of 2000, button text 75, ``value``/``action_id`` ≤ 255/2000.

The /score chart goes in an image block whose ``image_url`` is our own short-lived chart URL.
Slack's alternative, ``files_upload_v2``, shares the file to a channel, which would show a
patient's trend to everyone in it; an ephemeral reply cannot carry an upload.
"""

from __future__ import annotations

import json
from typing import Any

from bot.commands import Choice, Form, Input, Reply

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


def modal(form: Form, channel_id: str | None) -> Block:
    """The ``view`` for ``views.open``.  Limits: title, submit and close 24 characters,
    callback_id 255, private_metadata 3000, input labels 2000, placeholders 150, select
    options 100 of text 75 and value 150.  ``private_metadata`` carries the channel the
    command came from, for the audit log."""
    return {
        "type": "modal",
        "callback_id": form.form_id[:255],
        "title": _plain(form.title, 24),
        "submit": _plain(form.submit, 24),
        "close": _plain("Cancel", 24),
        "private_metadata": json.dumps({"channel": channel_id}),
        "blocks": [_input(i) for i in form.inputs][:100],
    }


def _input(field: Input) -> Block:
    element: Block = {"action_id": field.key}
    if field.choices:
        options = [_option(c) for c in field.choices[:100]]
        chosen = [o for o in options if o["value"] in {v.strip() for v in field.value.split(",")}]
        element["type"] = "multi_static_select" if field.multiple else "static_select"
        element["placeholder"] = _plain("Choose…", 150)
        element["options"] = options
        if chosen and field.multiple:
            element["initial_options"] = chosen
        elif chosen:
            element["initial_option"] = chosen[0]
    else:
        element |= {"type": "plain_text_input", "max_length": min(field.max_length, 3000)}
        if field.value:
            element["initial_value"] = field.value[: field.max_length]
        if field.hint:
            element["placeholder"] = _plain(field.hint, 150)
    return {"type": "input", "block_id": field.key, "label": _plain(field.label, 2000),
            "optional": not field.required, "element": element}  # fmt: skip


def _option(choice: Choice) -> Block:
    return {"text": _plain(choice.label, 75), "value": choice.value[:150]}


def values(view: dict[str, Any]) -> dict[str, str]:
    """A submitted view's inputs by block id, as strings (several choices comma-separated)."""
    found: dict[str, str] = {}
    for block_id, actions in ((view.get("state") or {}).get("values") or {}).items():
        for state in actions.values():
            if "selected_options" in state:
                found[block_id] = ",".join(str(o.get("value", "")) for o in state["selected_options"] or ())
            elif "selected_option" in state:
                found[block_id] = str((state["selected_option"] or {}).get("value", ""))
            else:
                found[block_id] = str(state.get("value") or "")
    return found


def done(reply: Reply) -> Block:
    """A modal showing ``reply`` (``response_action: update`` after a submission)."""
    return {"type": "modal", "title": _plain("CareBeacon", 24), "close": _plain("Done", 24), "blocks": blocks(reply)}


def escape(text: str) -> str:
    """Slack's three control characters; ``*bold*`` stays mrkdwn."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _plain(text: str, limit: int) -> Block:
    return {"type": "plain_text", "text": text[:limit], "emoji": True}


def _mrkdwn(text: str, limit: int) -> Block:
    return {"type": "mrkdwn", "text": escape(text)[:limit]}
