"""The ids every log line of the current unit of work carries (sync run, connection, alert, ...).

Kept in the lowest layer so that ``channels`` and ``db`` can add the ids they learn (a channel,
a delivery-log row) as well as the actors.  A ContextVar follows the work: each asyncio task,
and each Dramatiq message (its coroutine is scheduled from the worker thread, so it starts in
a copy of that thread's context), sees its own ids.  ``pipeline.logs`` puts them on records.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from types import MappingProxyType

Ids = Mapping[str, int | str]

_ids: ContextVar[Ids] = ContextVar("carebeacon_log_ids", default=MappingProxyType({}))


def current() -> Ids:
    """The ids bound now (read-only)."""
    return _ids.get()


def add(**ids: int | str | None) -> None:
    """Add ids to the current context until it ends (the task, or the message); None is skipped."""
    _ids.set(MappingProxyType({**_ids.get(), **{k: v for k, v in ids.items() if v is not None}}))


@contextlib.contextmanager
def bound(**ids: int | str | None) -> Iterator[None]:
    """Add ids for the ``with`` block only."""
    token = _ids.set(MappingProxyType({**_ids.get(), **{k: v for k, v in ids.items() if v is not None}}))
    try:
        yield
    finally:
        _ids.reset(token)


def clear() -> None:
    """Forget every id: a worker thread between messages."""
    _ids.set(MappingProxyType({}))
