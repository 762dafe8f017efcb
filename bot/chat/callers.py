"""Who a chat identity is: its workspace's tenant and its linked user (``db.chat.caller``), kept
in memory while this process hears every change to them.

Every command and click asks this first, and most ask what was asked a moment before.  Answers
are kept only while a connection LISTENs on ``chat_callers_changed`` (migration 0022), and all
of them are forgotten at each notification: a revoked link, an uninstalled app or a new link
counts as soon as its transaction commits and the notification arrives, a round trip later, not
at the end of a timeout.  Without that connection (not open yet, or lost) nothing is kept and
every lookup asks Postgres.  An answer read while a change came in is not kept: it may be the
old one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg

from db import chat

log = logging.getLogger(__name__)

CHANNEL = "chat_callers_changed"
# Identities kept; past it they are all forgotten, which costs one lookup each.
MAX_KEPT = 10_000

# What a lost server or a closing pool raises: the lookups then ask Postgres themselves.
UNREACHABLE = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)

Caller = tuple[int | None, int | None]  # (tenant id, user id); None: unbound workspace, or not linked


class Callers:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._kept: dict[tuple[str, str, str], Caller] = {}
        self._changes = 0  # notifications heard: an answer is kept only when none came during its lookup
        self._listening: Any = None  # the pool connection that LISTENs, once it does
        self._opening: asyncio.Task[None] | None = None
        self._releasing: asyncio.Future[None] | None = None  # held: asyncio keeps tasks only weakly

    @property
    def listening(self) -> bool:
        """Whether answers are kept: the LISTEN connection is open."""
        return self._listening is not None

    async def caller(self, platform: str, workspace_id: str, chat_user_id: str) -> Caller:
        """``db.chat.caller``'s answer, from memory when it is known to be current."""
        key = (platform, workspace_id, chat_user_id)
        listening, changes = self._listening, self._changes
        if listening is None:
            self._listen_soon()
        elif key in self._kept:
            return self._kept[key]
        found = await chat.caller(self._pool, *key)
        # Kept only when the LISTEN was on before the lookup began: a change committed earlier is
        # in what the lookup read, and a later one is heard.
        if listening is not None and listening is self._listening and changes == self._changes:
            if len(self._kept) >= MAX_KEPT:
                self._kept.clear()
            self._kept[key] = found
        return found

    def _listen_soon(self) -> None:
        if self._opening is None or self._opening.done():
            self._opening = asyncio.ensure_future(self._listen())

    async def _listen(self) -> None:
        try:
            conn = await self._pool.acquire()
        except UNREACHABLE as exc:
            log.warning("chat callers: no connection to listen on (%s); asking Postgres every time", exc)
            return
        try:
            await conn.add_listener(CHANNEL, self._changed)
        except BaseException as exc:  # cancelled by close() too: the connection goes back
            await self._pool.release(conn)
            if not isinstance(exc, UNREACHABLE):
                raise
            log.warning("chat callers: LISTEN failed (%s); asking Postgres every time", exc)
            return
        conn.add_termination_listener(self._lost)
        self._listening = conn

    def _changed(self, *_: object) -> None:
        self._changes += 1
        self._kept.clear()

    def _lost(self, *_: object) -> None:
        """The LISTEN connection closed: keep nothing until another one listens."""
        log.warning("chat callers: the LISTEN connection was lost; asking Postgres every time until it is back")
        listening, self._listening = self._listening, None
        self._changed()
        if listening is not None:
            # Back to the pool, which replaces a closed connection.
            self._releasing = asyncio.ensure_future(self._pool.release(listening))

    async def close(self) -> None:
        if self._opening is not None and not self._opening.done():
            self._opening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._opening
        listening, self._listening = self._listening, None
        self._changed()
        if listening is None:
            return
        listening.remove_termination_listener(self._lost)
        with contextlib.suppress(*UNREACHABLE):
            await listening.remove_listener(CHANNEL, self._changed)  # UNLISTEN: the pool does not reset
        await self._pool.release(listening)
