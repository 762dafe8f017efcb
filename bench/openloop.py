"""The open-loop load generator the HTTP benches share, and how they print a phase of it.

Request i is due at ``start + i / rate`` on a fixed clock and is sent then, whatever became of
earlier ones; its latency runs from that due time to the end of the response, so a stalled server
(or a stalled generator) shows in the tail instead of slowing the arrivals down (coordinated
omission).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import aiohttp

T = TypeVar("T")


@dataclass
class Fired:
    latencies_ms: list[float]  # every request, errors included (a timeout counts as what it took)
    errors: dict[str, int]
    late_ms: list[float]  # how late the generator sent each request after its due time
    answered: list[tuple[int, bytes]] = field(default_factory=list)  # (index, body) of each expected answer


async def fire(
    http: aiohttp.ClientSession, url: str, rate: float, requests: Sequence[T],
    prepare: Callable[[T], tuple[bytes | str, dict[str, str]]], expect: int = 200, deadline_s: float | None = None,
) -> Fired:  # fmt: skip
    """POST the requests at ``rate``/s; ``prepare`` makes each one's body and headers when it is
    due (a signature's timestamp is then fresh).  An error is a failure to connect, a timeout of
    the session, a status other than ``expect``, or an answer later than ``deadline_s``."""
    loop = asyncio.get_running_loop()
    done = Fired([0.0] * len(requests), {}, [0.0] * len(requests))

    def error(kind: str) -> None:
        done.errors[kind] = done.errors.get(kind, 0) + 1

    async def one(i: int, due: float) -> None:
        done.late_ms[i] = (loop.time() - due) * 1000
        body, headers = prepare(requests[i])
        status, answer = None, b""
        try:
            async with http.post(url, data=body, headers=headers) as resp:
                answer = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            error(type(exc).__name__)
        took = loop.time() - due
        done.latencies_ms[i] = took * 1000
        if status is not None and status != expect:
            error(f"HTTP {status}")
        elif status == expect and deadline_s is not None and took > deadline_s:
            error(f"later than {deadline_s:g} s")
        elif status == expect:
            done.answered.append((i, answer))

    start = loop.time() + 0.05
    tasks = []
    for i in range(len(requests)):
        due = start + i / rate
        wait = due - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    return done


@dataclass
class Phase:
    """One measured phase against one server."""

    name: str
    sent: int
    latencies_ms: list[float]
    errors: dict[str, int]
    late_ms: list[float]
    seconds: float
    load: float  # 1-minute load average at the end
    cpu_busy: float  # share of all cores busy during the phase (/proc/stat), -1 when unreadable
    server_cpu_ms: float = -1  # the serving process's CPU over the phase, per request sent

    def percentile(self, q: float) -> float:
        return percentile(self.latencies_ms, q)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def row(self, width: int, context: Sequence[str] = ()) -> str:
        """The phase as one line: p50, p95, p99, max, errors, then the context."""
        shown = [f"load {self.load:.2f}"]
        if self.server_cpu_ms >= 0:
            shown.append(f"server CPU {self.server_cpu_ms:.2f} ms/request")
        if self.cpu_busy >= 0:
            shown.append(f"CPU {self.cpu_busy:.0%} busy")
        shown += [*context, f"sender late p99 {percentile(self.late_ms, 99):.1f} ms"]
        detail = f" ({', '.join(f'{k} {v}' for k, v in sorted(self.errors.items()))})" if self.errors else ""
        return (
            f"{self.name:<{width}} {self.percentile(50):5.1f} ms {self.percentile(95):5.1f} ms"
            f" {self.percentile(99):5.1f} ms {max(self.latencies_ms):5.0f} ms  {self.error_count:>6}"
            f"  {'; '.join(shown)}{detail}"
        )


def header(width: int) -> str:
    return f"{'phase':<{width}} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8}  errors  context"


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]
