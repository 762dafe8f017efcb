"""The Bolt app: slash commands, alert buttons, modal submissions and lifecycle events, over the
command core.  The same app serves HTTP (/slack/events) and Socket Mode.

A command gets ``ANSWER_BUDGET`` to answer within its ack: Slack shows an ack's message as the
command's reply, so a quick command (most are: a lookup or two) costs one request and no
response_url POST.  A command still working then (or opening a form, which needs ``views.open``
with its trigger_id) is acked empty and finishes in a task, answering through the request's
response_url; the 3-second rule holds whatever the database does.  Not Bolt's lazy listeners:
they deep-copy every request before the ack, and its respond() opens a new HTTP session per
reply; the task reuses one kept-alive session.  Slow work (/sync) is further handed to Dramatiq
by the core.  Clicks are acked empty and answered through response_url, the only way to redraw
the clicked message.  A modal submission takes its validation errors only in the ack, so the
core checks it inline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Coroutine
from typing import Any

import aiohttp
import asyncpg
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext
from slack_bolt.oauth.async_oauth_flow import AsyncOAuthFlow
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot import commands
from bot.chat.callers import Callers
from bot.commands import Button, ChatIdentity
from bot.commands.background import Background, head_start
from bot.slack import render
from bot.slack.settings import SCOPES, SlackSettings
from bot.slack.stores import PgInstallationStore, PgOAuthStateStore
from db import chat
from db.sealing import Keyring

log = logging.getLogger(__name__)
BUTTON_ACTIONS = re.compile(r"^(ack|snooze1h|snooze4h|snooze24h|resolve)$")
# Slack keeps a response_url for 30 minutes; a reply slower than this is not coming.
REPLY_TIMEOUT = aiohttp.ClientTimeout(total=10)


def web_client(settings: SlackSettings, token: str | None = None) -> AsyncWebClient:
    """A Web API client that waits out 429s (Retry-After) twice before giving up."""
    client = AsyncWebClient(token=token, base_url=settings.api_url)
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=2))
    return client


def build(settings: SlackSettings, pool: asyncpg.Pool, keyring: Keyring, public_url: str) -> tuple[AsyncApp, Listeners]:
    """The Bolt app for ``settings`` (which must be on: ``settings.off_reason is None``), and its
    listeners, to be closed when the web app stops."""
    flow, store = None, None
    if settings.bot_token is None:
        assert settings.client_id is not None and settings.client_secret is not None
        store = PgInstallationStore(pool, keyring, settings.client_id)
        oauth = AsyncOAuthSettings(
            client_id=settings.client_id,
            client_secret=settings.client_secret,
            scopes=list(SCOPES),
            redirect_uri=f"{public_url}/slack/oauth_redirect",
            authorization_url=f"{settings.authorize_url}/oauth/v2/authorize",
            installation_store=store,
            installation_store_bot_only=True,
            state_store=PgOAuthStateStore(pool),
        )
        flow = AsyncOAuthFlow(client=web_client(settings), settings=oauth)
    bolt = AsyncApp(
        # Empty in Socket Mode without HTTP: Bolt skips the check there, and /slack/events is not served.
        signing_secret=settings.signing_secret or "",
        client=web_client(settings, settings.bot_token),
        oauth_flow=flow,
        # The ack runs inline, and the listeners start their work after it, as tasks.  With False,
        # Bolt starts the ack as a task and polls for it every 10 ms: a 10 ms floor on each ack.
        process_before_response=True,
    )
    listeners = Listeners(pool, keyring, public_url, store)
    listeners.register(bolt)
    return bolt, listeners


def workspace_of(context: AsyncBoltContext) -> str:
    """The key a Slack install maps to a tenant by: the org for an org-wide install, else the team."""
    key = context.enterprise_id if context.is_enterprise_install else context.team_id
    return str(key or "")


class Listeners:
    def __init__(
        self, pool: asyncpg.Pool, keyring: Keyring, public_url: str, store: PgInstallationStore | None
    ) -> None:
        self.pool, self.keyring, self.public_url, self.store = pool, keyring, public_url, store
        self.callers = Callers(pool)
        self.background = Background()
        self._http: aiohttp.ClientSession | None = None

    def register(self, bolt: AsyncApp) -> None:
        bolt.command(re.compile(r"^/"))(self.command_acked)
        bolt.action(BUTTON_ACTIONS)(self.button_acked)
        bolt.action(re.compile(r"^link-\d+$"))(_ack)  # URL buttons also send a click: nothing to do
        bolt.view_submission(re.compile(r"^[a-z]+:"))(self.submitted)
        bolt.event("app_uninstalled")(self.uninstalled)
        bolt.event("tokens_revoked")(self.tokens_revoked)

    async def command_acked(self, ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext) -> None:
        answering = await head_start(self.command(body, context))
        if answering.done() and answering.result().form is None:
            await ack(**render.message(answering.result()))
            return
        await ack()
        self.after_ack(self.answer_later(body, context, answering), f"/{body.get('command', '')}")

    async def button_acked(self, ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext) -> None:
        await ack()
        self.after_ack(self.button(body, context), "button")

    def after_ack(self, work: Coroutine[Any, Any, None], what: str) -> None:
        """Run ``work`` once the ack is out (``bot.commands.background``), logging its failure."""

        async def logged() -> None:
            try:
                await work
            except Exception:
                log.exception("slack %s failed after its ack", what)

        self.background.spawn(logged())

    async def respond(self, body: dict[str, Any], message: dict[str, Any]) -> None:
        """POST ``message`` to the request's response_url, as Bolt's respond() would."""
        url = body.get("response_url")
        if not url:
            log.warning("slack request without a response_url: no reply sent")
            return
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(timeout=REPLY_TIMEOUT)
        async with self._http.post(str(url), json=message) as answer:
            if answer.status >= 300:
                log.warning("slack response_url answered %d", answer.status)

    async def close(self) -> None:
        """Let the replies in flight finish, then close the session."""
        with contextlib.suppress(TimeoutError):
            await self.background.drain(REPLY_TIMEOUT.total)
        if self._http is not None:
            await self._http.close()
        await self.callers.close()

    async def command(self, body: dict[str, Any], context: AsyncBoltContext) -> commands.Reply:
        """The command's reply through the core; a failure is logged and answered with an apology."""
        name = str(body.get("command", "")).lstrip("/").removeprefix("cb-")
        identity = ChatIdentity("slack", workspace_of(context), str(context.user_id))
        request_id = str(body.get("trigger_id", ""))
        try:
            inv = await commands.resolve(
                self.callers, identity, name, commands.split_text(str(body.get("text", ""))),
                response_url=body.get("response_url"), channel_id=body.get("channel_id"), request_id=request_id,
            )  # fmt: skip
            return await commands.run(inv, self.pool, self.keyring, self.public_url)
        except Exception:
            log.exception("slack /%s failed (request %s)", name, request_id)
            return commands.Reply("Something went wrong", ("It has been logged. Please try again later.",))

    async def answer_later(
        self, body: dict[str, Any], context: AsyncBoltContext, answering: asyncio.Future[commands.Reply]
    ) -> None:
        """After an empty ack: open the reply's form as a modal, else POST the reply to response_url."""
        reply = await answering
        if reply.form is not None:
            try:
                view = render.modal(reply.form, body.get("channel_id"))
                assert context.client is not None
                await context.client.views_open(trigger_id=body.get("trigger_id"), view=view)
                return
            except SlackApiError as exc:
                # expired_trigger_id (over 3 s) and the like: the reply says how to type it instead.
                log.warning("slack /%s form not opened: %s", body.get("command"), exc.response.get("error"))
        await self.respond(body, render.message(reply))

    async def submitted(self, ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext) -> None:
        view = body.get("view") or {}
        form_id = str(view.get("callback_id", ""))
        identity = ChatIdentity("slack", workspace_of(context), str(context.user_id))
        try:
            channel = json.loads(view.get("private_metadata") or "{}").get("channel")
        except (ValueError, AttributeError):
            channel = None
        try:
            inv = await commands.resolve(self.callers, identity, form_id.partition(":")[0], (),
                                         channel_id=channel, request_id=str(view.get("id", "")))  # fmt: skip
            outcome = await commands.submit(inv, self.pool, self.keyring, self.public_url, form_id, render.values(view))
        except Exception:
            log.exception("slack form %s failed (view %s)", form_id, view.get("id"))
            failed = commands.Reply("Something went wrong", ("It has been logged. Please try again later.",))
            await ack(response_action="update", view=render.done(failed))
            return
        shown = {b.get("block_id") for b in view.get("blocks") or ()}
        errors = {key: message[:1].upper() + message[1:] for key, message in outcome.errors.items() if key in shown}
        if errors:
            await ack(response_action="errors", errors=errors)
        else:
            await ack(response_action="update", view=render.done(outcome.reply))

    async def button(self, body: dict[str, Any], context: AsyncBoltContext) -> None:
        action = (body.get("actions") or [{}])[0]
        parsed = Button.parse(str(action.get("value", "")))
        if parsed is None or parsed[0].value != action.get("action_id"):
            return  # not one of ours, or tampered with: nothing to do
        identity = ChatIdentity("slack", workspace_of(context), str(context.user_id))
        channel = (body.get("channel") or {}).get("id")
        inv = await commands.resolve(self.callers, identity, "button", (), channel_id=channel)
        outcome = await commands.act(self.pool, inv, *parsed)
        if outcome.card is not None:
            await self.respond(body, render.message(outcome.card, replace_original=True))
        if outcome.notice is not None:
            await self.respond(body, render.message(outcome.notice, replace_original=False))

    async def uninstalled(self, context: AsyncBoltContext) -> None:
        if self.store is not None:
            await self.store.async_delete_all(enterprise_id=context.enterprise_id, team_id=context.team_id)
        async with self.pool.acquire() as conn:
            revoked = await chat.disable_workspace(conn, "slack", workspace_of(context), "app_uninstalled")
        log.info("slack app uninstalled from %s; %d chat link(s) revoked", workspace_of(context), revoked)

    async def tokens_revoked(self, event: dict[str, Any], context: AsyncBoltContext) -> None:
        if event.get("tokens", {}).get("bot") and self.store is not None:
            await self.store.async_delete_bot(enterprise_id=context.enterprise_id, team_id=context.team_id)
        log.info("slack tokens revoked in %s", workspace_of(context))


async def _ack(ack: AsyncAck) -> None:
    await ack()
