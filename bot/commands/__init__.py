"""The chat command core: one set of commands, platform-neutral, for the Slack and Discord adapters.

Interface (what an adapter uses; everything here is frozen data or a coroutine)
-------------------------------------------------------------------------------
1. Identify the caller::

       identity = ChatIdentity(platform="discord", workspace_id=guild_id, user_id=user_snowflake)
       inv = await resolve(callers, identity, "score", ("p-17", "sleep"),
                           response_url=followup_url, channel_id=channel_id, request_id=interaction_id)

   ``resolve`` looks up the workspace's tenant (``chat_workspaces``) and the identity's link
   (``chat_identities``) through the adapter's ``bot.chat.callers.Callers``, which keeps answers
   only while it hears every change to those tables.  ``inv.args`` are the words after
   the command: Slack's ``text`` split shell-style (``split_text``), or Discord's options in
   the order ``COMMANDS[name].params`` declares them (as strings; skip absent ones at the end).
   ``response_url`` is where a later follow-up is POSTed: Slack's ``response_url``, Discord's
   ``{API}/webhooks/{application_id}/{interaction_token}`` (the ``chat_followup`` actor sends
   ``{"content", "flags": 64}`` there for ``platform="discord"``).

2. Run it::

       reply = await run(inv, pool, keyring, public_url)      # -> Reply, never raises for user errors

   Authorisation happens inside: an unbound workspace, an unlinked identity (for anything but
   /help and /connect), a patient outside the caller's care teams or tenant each come back as
   an ephemeral refusal, and are audited.  Every disclosure and action is audited with the
   chat identity, tenant, subject, command and visibility.  ``run`` does database work only
   (no calls to Slack or Discord); /sync enqueues Dramatiq work and returns at once.  Adapters
   run it with ``background.head_start``: a Reply ready within ``ANSWER_BUDGET`` goes in the
   ack (Slack ``ack(...)``, Discord type 4); a later one follows an empty ack (Discord: type 5
   deferred) through the response URL / interaction webhook, so the 3-second rule never depends
   on the database.

3. Render the ``Reply``: ``title``, ``sections`` (plain text with ``*bold*``), ``fields``
   (label/value pairs), ``image`` (PNG bytes to attach, plus ``image.url``, a 30-minute URL of
   ours serving the same PNG), ``buttons`` (alert buttons; wire id ``Button.custom_id`` =
   ``"{action}:{alert_id}"``), ``links`` (URL buttons), ``context`` (footer) and ``ephemeral``
   (Discord: flags 64; Slack: ``response_type``).  Slack's renderer is ``bot.slack.render``.

4. Alert buttons: parse the clicked id with ``Button.parse(custom_id)`` → (Action, alert id),
   build an Invocation for the clicker (command ``"button"``), then::

       outcome = await act(pool, inv, action, alert_id)

   ``outcome.card`` is the redrawn alert card to put in place of the message (None: leave it);
   ``outcome.notice`` is an ephemeral refusal for the clicker.  ``card(conn, alert_id)`` draws an
   alert card (for posting alerts with buttons).

5. Forms: a Reply with ``form`` set is shown as a modal (Slack ``views.open`` with the
   command's trigger_id; Discord type 9, which must be the initial response: a form that comes
   late is answered with its other parts, saying how to type the command); its submission, the
   values by input key, goes to::

       submitted = await submit(inv, pool, keyring, public_url, form_id, values)

   ``submitted.errors`` (by input key) are shown under the inputs where the platform can
   (Slack ``response_action: errors``), else ``submitted.reply`` lists them.

6. Registration (Discord ``discord-register``, Slack manifest): ``COMMANDS`` maps a name to its
   ``CommandDef`` (name, summary ≤ 100 chars, ``params`` with name/description/required/
   choices/rest, ``access``); ``/help`` is generated from the same table.
"""

from __future__ import annotations

__all__ = [
    "COMMANDS",
    "Access",
    "Action",
    "ActionOutcome",
    "Button",
    "ChatIdentity",
    "Choice",
    "CommandContext",
    "CommandDef",
    "Field",
    "Form",
    "Image",
    "Input",
    "Invocation",
    "Link",
    "Param",
    "Reply",
    "Submitted",
    "act",
    "card",
    "resolve",
    "run",
    "split_text",
    "submit",
]

import shlex

import asyncpg

from bot.commands.actions import ActionOutcome, act, card
from bot.commands.alerts import alerts
from bot.commands.base import Action, Button, ChatIdentity, CommandContext, Field, Image, Invocation, Link, Reply
from bot.commands.connect import connect
from bot.commands.forms import Choice, Form, Input, Submitted
from bot.commands.help import help_reply
from bot.commands.registry import Access, CommandDef, Param, dispatch, dispatch_submit, resolve
from bot.commands.rules import rules
from bot.commands.rules import submit as submit_rules
from bot.commands.score import DOMAINS, score
from bot.commands.sync import sync
from db.sealing import Keyring


async def _help(ctx: CommandContext) -> Reply:
    return help_reply(COMMANDS.values(), ctx)


_PATIENT = Param("patient", "A patient's id in your organisation (default: you)")
COMMANDS: dict[str, CommandDef] = {
    c.name: c
    for c in (
        CommandDef("help", "What CareBeacon can do here", (), Access.ANYONE, _help),
        CommandDef(
            "connect",
            "Link your account, list wearables, connect one, or `revoke` one",
            (Param("provider", "oura, whoop, dexcom, withings; or revoke"), Param("target", "provider to revoke")),
            Access.ANYONE,
            connect,
            ("/connect oura", "/connect revoke oura"),
        ),
        CommandDef(
            "sync",
            "Sync your wearables now; the result follows",
            (Param("provider", "only this one"),),
            Access.LINKED,
            sync,
        ),  # fmt: skip
        CommandDef(
            "score",
            "Today's health scores and the 30-day trend (only you see it)",
            (_PATIENT, Param("domain", "one domain", choices=DOMAINS)),
            Access.LINKED,
            score,
            ("/score", "/score p-17 sleep"),
        ),
        CommandDef("alerts", "Open alerts and recent deliveries", (_PATIENT,), Access.LINKED, alerts),
        CommandDef(
            "rules",
            "List, add, edit, pause, resume or delete alert rules; list their channels",
            (
                Param("action", "what to do", choices=("list", "channels", "add", "edit", "pause", "resume", "delete")),
                Param("arguments", "rule id and/or key=value pairs", rest=True),
            ),
            Access.LINKED,
            rules,
            (
                "/rules add name=night channels=3 severity=critical quiet=22:00-07:00",
                "/rules add (a form)",
                "/rules pause 12",
            ),
            submit=submit_rules,
        ),  # fmt: skip
    )
}


async def run(invocation: Invocation, pool: asyncpg.Pool, keyring: Keyring, public_url: str) -> Reply:
    """The reply to ``invocation`` (see the module docstring)."""
    return await dispatch(COMMANDS, invocation, pool, keyring, public_url)


async def submit(
    invocation: Invocation, pool: asyncpg.Pool, keyring: Keyring, public_url: str, form_id: str,
    values: dict[str, str],
) -> Submitted:  # fmt: skip
    """A form's submission (see the module docstring); never raises for a user's mistake."""
    return await dispatch_submit(COMMANDS, invocation, pool, keyring, public_url, form_id, values)


def split_text(text: str) -> tuple[str, ...]:
    """Slack's one ``text`` string as words, quotes grouping (``name="night watch"``); an
    unbalanced quote falls back to plain whitespace splitting."""
    try:
        return tuple(shlex.split(text))
    except ValueError:
        return tuple(text.split())
