"""Work a chat front end starts after its acknowledgement, on the running event loop, and the
head start a command gets to answer within the acknowledgement itself.

Each task is referenced until it ends, because asyncio keeps only weak references to tasks and
could collect one mid-run.  Work here is lost if the process dies: what must survive that (the
sync a /sync asks for) is a Dramatiq job, started by the command core.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

# How long a front end waits for an answer before it acknowledges without one.  Slack and
# Discord allow 3 s; the rest is the network's.  An answer ready in time is the acknowledgement
# (one request fewer: no response_url POST, no deferral to edit); a later one follows it.
ANSWER_BUDGET = 2.0


async def head_start(work: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
    """``work`` started, once it is done or ``ANSWER_BUDGET`` has passed, whichever is first: the
    caller answers with its result, or acknowledges and awaits it afterwards."""
    task = asyncio.ensure_future(work)
    await asyncio.wait({task}, timeout=ANSWER_BUDGET)
    return task


class Background:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for the work started so far, and any it starts, for up to ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
