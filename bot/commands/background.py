"""Work a chat front end starts after its acknowledgement, on the running event loop.

Each task is referenced until it ends, because asyncio keeps only weak references to tasks and
could collect one mid-run.  Work here is lost if the process dies: what must survive that (the
sync a /sync asks for) is a Dramatiq job, started by the command core.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


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
