"""What the front end does with an interaction, whichever transport brought it.

``handle`` returns the *initial response* and, when there is more to do, the coroutine that
does it afterwards.  The HTTP endpoint answers the POST with the initial response; the gateway
POSTs it to the callback endpoint.  Either then runs the rest with ``spawn``.  Each interaction
gets ``ANSWER_BUDGET`` (``bot.commands.background``) to be answered in the initial response:

* APPLICATION_COMMAND: resolve → run through the command core.  Done in time, the reply is the
  initial response: MODAL (type 9) for a form (a modal cannot follow a deferral), else a message
  (type 4) as visible as the reply says.  Still working, or carrying the chart (a file, which
  goes in a multipart edit), it is deferred (type 5, ephemeral) and the reply PATCHed over
  ``@original`` through the interaction webhook; a public reply then goes as a public follow-up
  instead (a deferral's visibility is fixed), and a form's reply says how to type it.
* MODAL_SUBMIT likewise: the core validates it, and the answer, or the errors by input, is an
  ephemeral message.
* MESSAGE_COMPONENT (alert buttons): the click is authorised and applied by the core's ``act``:
  UPDATE_MESSAGE (type 7) with the redrawn card, or an ephemeral refusal.  Late, it is answered
  DEFERRED_UPDATE_MESSAGE (6) and the card is PATCHed when it is done.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

import asyncpg

from bot import commands
from bot.chat.callers import Callers
from bot.commands import ActionOutcome, Button, ChatIdentity, Reply
from bot.commands.background import Background, head_start
from bot.discord import render
from bot.discord.interaction import EPHEMERAL, Callback, Incoming, Type
from bot.discord.rest import DiscordApiError, DiscordRest
from db.sealing import Keyring

log = logging.getLogger(__name__)
Json = dict[str, Any]
Later = Coroutine[Any, Any, None]
FAILED = Reply("Something went wrong", ("It has been logged. Please try again later.",))


class Interactions:
    def __init__(self, pool: asyncpg.Pool, keyring: Keyring, public_url: str, rest: DiscordRest) -> None:
        self.pool, self.keyring, self.public_url, self.rest = pool, keyring, public_url, rest
        self.background = Background()
        self.callers = Callers(pool)

    async def handle(self, incoming: Incoming) -> tuple[Json, Later | None]:
        """The initial response, and the work that follows it (None: nothing follows)."""
        if incoming.type == Type.PING:
            return {"type": Callback.PONG}, None
        if incoming.type == Type.APPLICATION_COMMAND:
            return await self._soon(incoming, self._run(incoming))
        if incoming.type == Type.MODAL_SUBMIT:
            return await self._soon(incoming, self._submit(incoming))
        if incoming.type == Type.MESSAGE_COMPONENT:
            return await self._component(incoming)
        if incoming.type == Type.AUTOCOMPLETE:
            return {"type": 8, "data": {"choices": []}}, None
        unsupported = render.message(Reply("Not supported", ("CareBeacon does not handle that here.",)))
        return {"type": Callback.CHANNEL_MESSAGE_WITH_SOURCE, "data": unsupported.payload}, None

    def spawn(self, later: Later) -> None:
        """Run ``later`` after the response (``bot.commands.background``)."""
        self.background.spawn(later)

    async def drain(self) -> None:
        """Wait for the background work (shutdown, tests)."""
        await self.background.drain()

    async def close(self) -> None:
        """Wait for the background work, then let go of the callers' connection."""
        await self.drain()
        await self.callers.close()

    def args(self, incoming: Incoming) -> tuple[str, ...]:
        """The options in the order the command declares them; a ``rest`` one split into words."""
        found = commands.COMMANDS.get(incoming.command)
        given = incoming.options()
        words: list[str] = []
        for param in found.params if found else ():
            value = given.get(param.name)
            if value is None or not value.strip():
                continue
            words += commands.split_text(value) if param.rest else [value.strip()]
        return tuple(words)

    def identity(self, incoming: Incoming) -> ChatIdentity:
        return ChatIdentity("discord", incoming.guild_id, incoming.user_id)

    async def _run(self, incoming: Incoming) -> Reply:
        try:
            inv = await commands.resolve(
                self.callers, self.identity(incoming), incoming.command, self.args(incoming),
                response_url=self.rest.webhook_url(incoming.token), channel_id=incoming.channel_id,
                request_id=incoming.id,
            )  # fmt: skip
            return await commands.run(inv, self.pool, self.keyring, self.public_url)
        except Exception:
            # Say something rather than leave "thinking…" forever.
            log.exception("discord /%s failed (interaction %s)", incoming.command, incoming.id)
            return FAILED

    async def _submit(self, incoming: Incoming) -> Reply:
        form_id = incoming.custom_id
        try:
            inv = await commands.resolve(self.callers, self.identity(incoming), form_id.partition(":")[0], (),
                                         channel_id=incoming.channel_id, request_id=incoming.id)  # fmt: skip
            submitted = await commands.submit(inv, self.pool, self.keyring, self.public_url, form_id,
                                              incoming.submitted())  # fmt: skip
            return submitted.reply  # the errors, when there are any, are listed in it
        except Exception:
            log.exception("discord form %s failed (interaction %s)", form_id, incoming.id)
            return FAILED

    async def _soon(self, incoming: Incoming, work: Coroutine[Any, Any, Reply]) -> tuple[Json, Later | None]:
        """The reply of ``work`` as the initial response (a modal for a form, else a message), or
        a deferral and the reply delivered later (see the module docstring)."""
        answering = await head_start(work)
        if answering.done():
            reply = answering.result()
            if reply.form is not None:
                return {"type": Callback.MODAL, "data": render.modal(reply.form)}, None
            message = render.message(reply)
            if message.png is None:
                return {"type": Callback.CHANNEL_MESSAGE_WITH_SOURCE, "data": message.payload}, None
        deferred = {"type": Callback.DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE, "data": {"flags": EPHEMERAL}}
        return deferred, self._late_reply(incoming, answering)

    async def _late_reply(self, incoming: Incoming, answering: asyncio.Future[Reply]) -> None:
        reply = await answering
        try:
            if reply.ephemeral:
                await self.rest.edit_original(incoming.token, render.message(reply, ephemeral=True))
            else:
                await self.rest.followup(incoming.token, render.message(reply, ephemeral=False))
                note = Reply("Posted", ("The answer is in the channel.",))
                await self.rest.edit_original(incoming.token, render.message(note, ephemeral=True))
        except DiscordApiError as exc:
            log.warning("discord /%s reply not delivered (interaction %s): %s", incoming.command, incoming.id, exc)

    async def _component(self, incoming: Incoming) -> tuple[Json, Later | None]:
        parsed = Button.parse(incoming.custom_id)
        if parsed is None:
            return {"type": Callback.DEFERRED_UPDATE_MESSAGE}, None  # not ours (or tampered): nothing
        clicked = await head_start(self._act(incoming, *parsed))
        if clicked.done():
            return _answer(clicked.result()), None
        return {"type": Callback.DEFERRED_UPDATE_MESSAGE}, self._late(incoming, clicked)

    async def _act(self, incoming: Incoming, action: commands.Action, alert_id: int) -> ActionOutcome:
        try:
            inv = await commands.resolve(self.callers, self.identity(incoming), "button", (),
                                         channel_id=incoming.channel_id, request_id=incoming.id)  # fmt: skip
            return await commands.act(self.pool, inv, action, alert_id)
        except Exception:
            log.exception("discord button %s failed (interaction %s)", incoming.custom_id, incoming.id)
            return ActionOutcome(None, FAILED)

    async def _late(self, incoming: Incoming, clicked: asyncio.Future[ActionOutcome]) -> None:
        outcome = await clicked
        try:
            if outcome.card is not None:
                await self.rest.edit_original(incoming.token, render.message(outcome.card, ephemeral=False))
            if outcome.notice is not None:
                await self.rest.followup(incoming.token, render.message(outcome.notice, ephemeral=True))
        except DiscordApiError as exc:
            log.warning("discord button answer not delivered (interaction %s): %s", incoming.id, exc)


def _answer(outcome: ActionOutcome) -> Json:
    if outcome.card is not None:
        return {"type": Callback.UPDATE_MESSAGE, "data": render.message(outcome.card, ephemeral=False).payload}
    if outcome.notice is not None:
        notice = render.message(outcome.notice, ephemeral=True).payload
        return {"type": Callback.CHANNEL_MESSAGE_WITH_SOURCE, "data": notice}
    return {"type": Callback.DEFERRED_UPDATE_MESSAGE}
