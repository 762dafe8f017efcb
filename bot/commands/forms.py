"""Forms: what a command asks for in a modal, platform-neutral, and what a submission answers.

A command that would rather ask than parse (``/rules add`` with no ``key=value``) returns a
Reply whose ``form`` is set.  Slack renders it as a modal (``views.open`` with the command's
trigger_id), Discord as a MODAL response (type 9).  The submission comes back as the form's
values by input key and goes through ``bot.commands.submit``; the same validation as the typed
arguments runs, and its errors come back per key (Slack shows them under each input; Discord,
which cannot, in an ephemeral message).

Inputs are ordered by importance: Discord holds at most five, and shows the first five.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.commands.base import Field, Reply

DISCORD_INPUTS = 5  # a Discord modal's limit; Slack's is 100 blocks


@dataclass(frozen=True, slots=True)
class Choice:
    value: str
    label: str


@dataclass(frozen=True, slots=True)
class Input:
    """One input.  ``key`` is its wire id (Slack block_id and action_id, Discord custom_id);
    ``value`` pre-fills it; ``choices`` make it a select where the platform has one (a text
    input naming the choices elsewhere); ``multiple`` lets it take several, comma-separated."""

    key: str
    label: str  # ≤ 45 characters: Discord's limit
    hint: str = ""  # a placeholder, ≤ 100 characters
    value: str = ""
    required: bool = False
    choices: tuple[Choice, ...] = ()
    multiple: bool = False
    max_length: int = 200


@dataclass(frozen=True, slots=True)
class Form:
    """``form_id`` names the command and what it is for (``rules:add``, ``rules:edit:12``): it
    comes back with the submission.  ``title`` ≤ 24 characters (Slack's limit)."""

    form_id: str
    title: str
    inputs: tuple[Input, ...]
    submit: str = "Save"


@dataclass(frozen=True, slots=True)
class Submitted:
    """A submission's answer.  ``errors`` by input key (empty: accepted); ``reply`` says what
    happened, or lists the errors for a platform that cannot show them by the inputs."""

    reply: Reply
    errors: dict[str, str] = field(default_factory=dict)


def rejected(labels: dict[str, str], errors: dict[str, str]) -> Submitted:
    """A submission refused for ``errors``; ``labels`` (by input key) name them in the reply."""
    fields = tuple(Field(labels.get(key, key), message) for key, message in errors.items())
    return Submitted(Reply("Please correct the form", ("Nothing was saved.",), fields=fields), errors)
