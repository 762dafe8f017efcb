"""An interaction as the handlers see it, from either transport: the HTTP endpoint's JSON or a
discord.py gateway ``Interaction``.  Only what the handlers use, parsed at the edge."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

Json = dict[str, Any]


class Type(IntEnum):
    """Interaction types (discord-api-docs, receiving-and-responding)."""

    PING = 1
    APPLICATION_COMMAND = 2
    MESSAGE_COMPONENT = 3
    AUTOCOMPLETE = 4
    MODAL_SUBMIT = 5


class Callback(IntEnum):
    """Interaction callback types."""

    PONG = 1
    CHANNEL_MESSAGE_WITH_SOURCE = 4
    DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE = 5
    DEFERRED_UPDATE_MESSAGE = 6
    UPDATE_MESSAGE = 7
    MODAL = 9


EPHEMERAL = 1 << 6


@dataclass(frozen=True, slots=True)
class Incoming:
    id: str
    type: int
    token: str = field(repr=False)  # 15 minutes of follow-ups: a bearer capability
    application_id: str
    guild_id: str  # "" outside a guild (a DM): no tenant
    user_id: str
    channel_id: str | None
    data: Json

    @classmethod
    def from_json(cls, raw: Json) -> Incoming:
        """Raises ValueError for a document that is not an interaction."""
        try:
            user = (raw.get("member") or {}).get("user") or raw.get("user") or {}
            return cls(
                str(raw.get("id", "")),  # Discord's own PINGs carry one; the vector's does not
                int(raw["type"]),
                str(raw.get("token", "")),
                str(raw.get("application_id", "")),
                str(raw.get("guild_id") or ""),
                str(user.get("id", "")),
                str(raw["channel_id"]) if raw.get("channel_id") else None,
                dict(raw.get("data") or {}),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError("not an interaction") from exc

    @property
    def command(self) -> str:
        return str(self.data.get("name", ""))

    @property
    def custom_id(self) -> str:
        return str(self.data.get("custom_id", ""))

    def submitted(self) -> dict[str, str]:
        """A modal's text inputs by ``custom_id``: in action rows (type 1, ``components``), or in
        labels (type 18, ``component``), as Discord sends either."""
        found: dict[str, str] = {}
        for row in self.data.get("components") or ():
            inner = row.get("components") or ([row["component"]] if row.get("component") else [])
            for part in inner:
                if "custom_id" in part and isinstance(part.get("value"), str):
                    found[str(part["custom_id"])] = part["value"]
        return found

    def options(self) -> dict[str, str]:
        """A slash command's options by name, as strings (sub-commands are not used)."""
        return {str(o["name"]): str(o["value"]) for o in self.data.get("options") or () if "value" in o}
