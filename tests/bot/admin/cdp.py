"""Headless Debian Chromium driven over the Chrome DevTools Protocol, with aiohttp's websocket.

Why not Playwright or Selenium: Playwright's Python package downloads a browser build of its
own, which this network cannot fetch, and Selenium would add a dependency and chromedriver for
the four verbs the tests need (navigate, evaluate, wait for a load, screenshot).  CDP is what
both speak underneath; Chromium serves it on ``--remote-debugging-port``.

Missing Chromium is a failure, never a skip: ``.ci/run`` installs Debian's ``chromium``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

BINARIES = ("/usr/bin/chromium", "chromium", "chromium-browser")


def find_chromium() -> str:
    for name in BINARIES:
        found = shutil.which(name)
        if found:
            return found
    raise AssertionError("Chromium is not installed: `apt-get install -y chromium` (.ci/run does this)")


class Browser:
    """One headless Chromium with one page.  ``async with Browser() as page: ...``."""

    def __init__(self) -> None:
        self.profile = Path(tempfile.mkdtemp(prefix="cb-chromium-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.http: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    async def __aenter__(self) -> Browser:
        self.process = subprocess.Popen(
            [
                find_chromium(),
                "--headless=new",
                "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--window-size=1400,900",
                "--remote-debugging-port=0",
                "--remote-debugging-address=127.0.0.1",
                f"--user-data-dir={self.profile}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port_file = self.profile / "DevToolsActivePort"
        for _ in range(300):
            if port_file.exists() and port_file.read_text().strip():
                break
            if self.process.poll() is not None:
                raise AssertionError(f"Chromium exited at start with {self.process.returncode}")
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("Chromium did not open its DevTools port within 15 s")
        port = int(port_file.read_text().split()[0])
        self.http = aiohttp.ClientSession()
        async with self.http.get(f"http://127.0.0.1:{port}/json/list") as response:
            targets = await response.json()
        page = next(t for t in targets if t["type"] == "page")
        self.ws = await self.http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        await self.send("Page.enable")
        await self.send("Runtime.enable")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.http is not None:
            await self.http.close()
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.profile, ignore_errors=True)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        assert self.ws is not None
        self.next_id += 1
        sent = self.next_id
        await self.ws.send_str(json.dumps({"id": sent, "method": method, "params": params}))
        while True:
            reply = json.loads((await asyncio.wait_for(self.ws.receive(), 30)).data)
            if reply.get("id") == sent:
                if "error" in reply:
                    raise AssertionError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            self.events.append(reply)

    async def _loaded(self) -> None:
        assert self.ws is not None
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            self.events.append(json.loads((await asyncio.wait_for(self.ws.receive(), 30)).data))

    async def goto(self, url: str) -> None:
        self.events.clear()
        await self.send("Page.navigate", url=url)
        await self._loaded()

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def submit(self, expression: str) -> None:
        """Run ``expression`` (which clicks or submits) and wait for the page it leads to."""
        self.events.clear()
        await self.evaluate(expression)
        await self._loaded()

    async def fill(self, selector: str, value: str) -> None:
        await self.evaluate(f"document.querySelector({json.dumps(selector)}).value = {json.dumps(value)}")

    async def text(self) -> str:
        found: str = await self.evaluate("document.body.innerText")
        return found

    async def url(self) -> str:
        found: str = await self.evaluate("location.href")
        return found

    async def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        shot = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(shot["data"]))
