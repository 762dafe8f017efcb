"""The values that cross between a chat adapter and the command core: frozen, platform-neutral."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

import asyncpg

from db.sealing import Keyring

if TYPE_CHECKING:
    from bot.commands.forms import Form


@dataclass(frozen=True, slots=True)
class ChatIdentity:
    """Who typed: Slack (team or enterprise id, user id) or Discord (guild id, user snowflake)."""

    platform: str  # "slack" | "discord"
    workspace_id: str
    user_id: str

    @property
    def label(self) -> str:
        """How the audit log names the chat identity."""
        return f"{self.platform}:{self.workspace_id}:{self.user_id}"


@dataclass(frozen=True, slots=True)
class Invocation:
    """One command as the adapter received it, with its tenant and link already resolved
    (``bot.commands.resolve``).  ``args`` are the words after the command: Slack's ``text``
    split shell-style, or Discord's options in the order ``CommandDef.params`` declares them.
    ``response_url`` is where a later follow-up goes (Slack's response_url, Discord's
    interaction webhook ``/webhooks/{app_id}/{token}``); None when the platform gave none."""

    command: str  # without the slash: "score"
    args: tuple[str, ...]
    identity: ChatIdentity
    tenant_id: int | None  # None: the workspace or guild is bound to no tenant
    user_id: int | None  # the linked CareBeacon user; None: not linked
    response_url: str | None = field(default=None, repr=False)
    channel_id: str | None = None
    request_id: str = ""


class Action(StrEnum):
    """What an alert button does.  Its wire id is ``f"{action}:{alert_id}"``, nothing else."""

    ACK = "ack"
    SNOOZE_1H = "snooze1h"
    SNOOZE_4H = "snooze4h"
    SNOOZE_24H = "snooze24h"
    RESOLVE = "resolve"


SNOOZE_HOURS = {Action.SNOOZE_1H: 1, Action.SNOOZE_4H: 4, Action.SNOOZE_24H: 24}


@dataclass(frozen=True, slots=True)
class Button:
    action: Action
    alert_id: int
    label: str
    danger: bool = False

    @property
    def custom_id(self) -> str:
        """The opaque id sent round the client: Slack ``value``/``action_id``, Discord ``custom_id``."""
        return f"{self.action.value}:{self.alert_id}"

    @staticmethod
    def parse(custom_id: str) -> tuple[Action, int] | None:
        """``custom_id`` back into (action, alert id); None for anything else."""
        action, _, raw = custom_id.partition(":")
        try:
            return Action(action), int(raw)
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class Field:
    label: str
    value: str


@dataclass(frozen=True, slots=True)
class Link:
    """A URL button (Slack button with ``url``, Discord link-style button)."""

    label: str
    url: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Image:
    """A PNG, and the short-lived URL of ours that serves it (for Slack's image block)."""

    png: bytes = field(repr=False)
    url: str = field(repr=False)
    alt: str = "chart"


@dataclass(frozen=True, slots=True)
class Reply:
    """What a command or click answers.  Text is plain with ``*bold*`` only (both platforms
    render it); links go in ``links``, never inline.  ``ephemeral`` (the default): only the
    invoker sees it.  ``form`` set: open it as a modal instead of answering (the other parts
    are the answer where a modal cannot open)."""

    title: str
    sections: tuple[str, ...] = ()
    fields: tuple[Field, ...] = ()
    image: Image | None = None
    buttons: tuple[Button, ...] = ()
    links: tuple[Link, ...] = ()
    context: str | None = None  # a footer line
    ephemeral: bool = True
    form: Form | None = None

    @property
    def fallback(self) -> str:
        """One-line text for notifications and clients without rich layout."""
        return " — ".join([self.title, *self.sections[:1]])[:3000]


@dataclass(frozen=True, slots=True)
class CommandContext:
    """What a handler gets: the invocation and the services it may use."""

    invocation: Invocation
    pool: asyncpg.Pool
    keyring: Keyring
    public_url: str

    @property
    def tenant_id(self) -> int:
        """The tenant; the dispatcher guarantees one before any handler runs."""
        assert self.invocation.tenant_id is not None
        return self.invocation.tenant_id


class CommandError(Exception):
    """A command refused with a message for the invoker (shown ephemerally)."""

    def __init__(self, message: str, *, audit_as: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        # When set, the refusal is audited with this action ("chat.denied").
        self.audit_as = audit_as


class UsageError(CommandError):
    """The arguments do not parse: the reply shows the command's usage."""


class Denied(CommandError):
    """The invoker may not do this (unlinked, another tenant, outside the care team)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, audit_as="chat.denied")
