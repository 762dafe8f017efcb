"""Socket Mode: the same Bolt app, fed over a WebSocket that we open, for hosts Slack cannot reach.

slack-bolt's ``AsyncSocketModeHandler`` (on slack_sdk's aiohttp client) calls
``apps.connections.open`` with the app-level token, connects to the URL it returns, and hands
each envelope (``slash_commands``, ``interactive``, ``events_api``) to the app; the ack goes
back over the socket with the envelope's id, and a listener's ``ack(...)`` body as its payload.
There is no request signature to check: the app-level token authenticates the socket.
Slack refreshes connections (a ``disconnect`` message); the client reconnects by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp

log = logging.getLogger(__name__)


Lifecycle = Callable[[web.Application], contextlib.AbstractAsyncContextManager[None]]


def lifecycle(bolt: AsyncApp, app_token: str) -> Lifecycle:
    """An aiohttp ``cleanup_ctx`` that connects while the web app runs.  The connection is made in
    the background: an unreachable Slack must not hold up the web app, and the client retries."""

    @contextlib.asynccontextmanager
    async def connected(_: web.Application) -> AsyncIterator[None]:
        # Made here, on the running loop: the client opens its aiohttp session in __init__.
        handler = AsyncSocketModeHandler(bolt, app_token)
        task = asyncio.ensure_future(handler.connect_async())  # type: ignore[no-untyped-call]
        log.info("Slack Socket Mode: connecting")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await handler.close_async()  # type: ignore[no-untyped-call]

    return connected
