"""Peers a drill can take down and bring back: a Redis server, an SMTP server, a rate-limiting Oura.

Each is private to one drill, so killing it disturbs no other test of the session: the suite's
shared Redis and PostgreSQL are never restarted (the PostgreSQL drill runs on an embedded server
of its own, see conftest.py).
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis
from aiohttp import web
from aiosmtpd.controller import Controller

from tests.fakes.oura import Account, FakeOura
from tests.fakes.smtp import FakeSmtp


def free_port() -> int:
    """A port nobody listens on just now (the usual race: fine on a test machine)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class PrivateRedis:
    """A ``redis-server`` on a port of its own, without persistence: a kill loses everything in
    it, and a start on the same port is an empty Redis where the old one was."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log = workdir / "redis-server.log"
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout: float = 10.0) -> PrivateRedis:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        with self.log.open("a") as sink:
            self.process = subprocess.Popen(
                [*args, "--dir", str(self.workdir)], stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.starts += 1
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + timeout
        try:
            while True:
                with contextlib.suppress(redis.ConnectionError):
                    if client.ping():
                        return self
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"redis-server did not answer on port {self.port}: {self.log.read_text()}")
                time.sleep(0.05)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: what a lost node or an OOM killer does; every key is gone with it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        self.kill()


class RestartableSmtp(FakeSmtp):
    """The STARTTLS fake SMTP server, able to go down and come back on the same port.

    aiosmtpd closes a stopped controller's event loop, so each restart builds a new controller
    with the first one's handler and SMTP options: mail received before and after is in one list.
    """

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.up = False

    def start(self) -> RestartableSmtp:
        if self.controller.loop.is_closed():
            old = self.controller
            self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, **old.SMTP_kwargs)
        self.controller.start()
        self.up = True
        return self

    def stop(self) -> None:
        if self.up:
            self.controller.stop()
            self.up = False


class SilentSmtp:
    """A port that accepts connections and never says a word: an SMTP server hung mid-outage.

    The kernel completes each TCP handshake into the listen backlog, so a client connects and
    then waits for a greeting that never comes, until its own timeout.
    """

    def __init__(self) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(64)
        self.port: int = self.socket.getsockname()[1]

    def close(self) -> None:
        self.socket.close()


class StormOura(FakeOura):
    """The fake Oura API, answering an account's every data request with 429 and ``Retry-After``
    until that account's storm ends (a time, not a count: the provider does not care how often
    we knock)."""

    def __init__(self) -> None:
        super().__init__()
        self.storms: dict[str, tuple[float, str]] = {}  # account name → (monotonic end, Retry-After)

    def storm(self, account: Account, seconds: float, retry_after: int) -> None:
        self.storms[account.name] = (time.monotonic() + seconds, str(retry_after))

    async def _collection(self, request: web.Request) -> web.StreamResponse:
        account = self.bearer(request)
        storm = self.storms.get(account.name) if account is not None else None
        if account is None or storm is None or time.monotonic() >= storm[0]:
            return await super()._collection(request)
        account.record(request)
        body = {"status": 429, "title": "Too Many Requests", "detail": "Rate limit exceeded"}
        return web.json_response(body, status=429, headers={"Retry-After": storm[1]})
