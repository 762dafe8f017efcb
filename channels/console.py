"""The console channel: one line on standard output, and optionally a JSON line in a file.

It needs no network, so it is the demo's and the embedded default's channel, and a local
sink that tests can read back.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from channels.base import Channel, Delivery, DeliveryStatus, Rendered
from channels.errors import ConfigError
from db.alerts import Alert

_MARK = {"info": "i", "warning": "!", "critical": "!!"}


@dataclass(frozen=True, slots=True)
class ConsoleConfig:
    path: Path | None = None
    stdout: bool = True


class Console(Channel):
    kind = "console"

    def __init__(self, config: ConsoleConfig) -> None:
        self.config = config

    @classmethod
    def parse_config(cls, raw: dict[str, Any]) -> Console:
        unknown = set(raw) - {"path", "stdout"}
        if unknown:
            raise ConfigError(f"console: unknown field(s) {', '.join(sorted(unknown))}")
        path = raw.get("path")
        if path is not None and (not isinstance(path, str) or not path.strip()):
            raise ConfigError("console: path must be a non-empty string")
        stdout = raw.get("stdout", True)
        if not isinstance(stdout, bool):
            raise ConfigError("console: stdout must be true or false")
        return cls(ConsoleConfig(Path(path) if path else None, stdout))

    def render(self, alert: Alert) -> Rendered:
        when = (alert.recorded_at or alert.created_at).isoformat()
        text = f"[{alert.severity.upper()} {_MARK[alert.severity]}] {alert.patient}: {alert.title} — {alert.body}"
        payload = {
            "alert_id": alert.id,
            "severity": alert.severity,
            "category": alert.category,
            "metric": alert.metric,
            "patient": alert.patient,
            "title": alert.title,
            "body": alert.body,
            "recorded_at": when,
        }
        return Rendered(alert.title, text, alert.severity, payload)

    async def send(self, message: Rendered) -> Delivery:
        if self.config.stdout:
            print(f"alert  {message.text}", file=sys.stdout, flush=True)
        if self.config.path is not None:
            try:
                # A local append of one short line: not worth a thread hop.
                self.config.path.parent.mkdir(parents=True, exist_ok=True)
                with self.config.path.open("a") as sink:
                    sink.write(json.dumps(message.payload) + "\n")
            except OSError as exc:
                return Delivery(DeliveryStatus.TRANSIENT, f"console: cannot append to file ({exc.strerror})")
        return Delivery(DeliveryStatus.DELIVERED)
