"""One HTTP POST for every HTTP channel, and one place that turns a peer's answer into a Delivery.

Classification (``classify``):

    2xx                       DELIVERED
    429                       RATE_LIMITED, retry_after from Retry-After (seconds or HTTP-date),
                              X-RateLimit-Reset-After (Discord) or a JSON body's ``retry_after``
    408, 425, 5xx             TRANSIENT (with Retry-After when the peer sent one)
    401, 403                  AUTH
    3xx                       PERMANENT: redirects are never followed (one could point inside our network)
    ``gone`` statuses         GONE (the Webhook channel passes 410: disable the endpoint)
    any other 4xx             PERMANENT
    timeout, connection error TRANSIENT (returned by ``Transport.post``)

A detail names the service, the status and a short reason with control characters removed; it
names the host but never the URL's path or query, which carry webhook tokens.

Connections are kept alive: each event loop has one ``aiohttp.ClientSession`` (``session()``),
closed with the loop's other resources (``close_session()``, from pipeline.runtime).  A new TCP
(and TLS) connection per POST cost more than the POST itself.  The destination check still runs
before every send, and redirects are still never followed.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp

from channels.base import Delivery, DeliveryStatus
from channels.destinations import DestinationError, DestinationPolicy
from channels.errors import ConfigError
from db import env as envlib
from db.alerts import Alert

DEFAULT_TIMEOUT = 10.0
MAX_BODY = 64 * 1024  # enough for any vendor's error document; a peer cannot make us buffer more
REASON_CHARS = 80

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
# Connections one loop keeps open at most, in all and to one host.  A worker's loop runs one
# send per Dramatiq thread at a time, so the total is not what queues a send; the per-host
# bound leaves a slow host unable to take them all.
POOL_LIMIT = 100
POOL_LIMIT_PER_HOST = 50
KEEPALIVE_S = 30.0

# One session per event loop: a session belongs to the loop it was made on, and is never
# used from another.  Loops are keys; each is only read and written from its own thread.
_sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}


def session() -> aiohttp.ClientSession:
    """The running loop's session, made on first use (or again once closed)."""
    loop = asyncio.get_running_loop()
    found = _sessions.get(loop)
    if found is None or found.closed:
        # A loop closed without close_session (a test's) leaves its entry: drop it, and its
        # session with it; that session can no longer be used or closed.
        for gone in [other for other in list(_sessions) if other.is_closed()]:
            _sessions.pop(gone, None)
        # No DNS cache: a new connection resolves afresh, as it did with a session per POST.
        connector = aiohttp.TCPConnector(
            limit=POOL_LIMIT, limit_per_host=POOL_LIMIT_PER_HOST, keepalive_timeout=KEEPALIVE_S, use_dns_cache=False
        )
        # No cookie jar: one tenant's peer must not set what another tenant's request carries.
        # No session-wide timeout: each Transport passes its own per request.
        found = aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())
        _sessions[loop] = found
    return found


async def close_session() -> None:
    """Close the running loop's session, if it has one; the next ``session()`` makes a new one."""
    found = _sessions.pop(asyncio.get_running_loop(), None)
    if found is not None and not found.closed:
        await found.close()


@dataclass(frozen=True, slots=True)
class Reply:
    """A peer's answer: its status, headers (names lower-cased) and the first MAX_BODY bytes."""

    status: int
    headers: Mapping[str, str]
    body: bytes = field(repr=False)

    def json(self) -> Any:
        """The body as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class Transport:
    """Where channels may send (the SSRF policy) and how long one POST may take."""

    policy: DestinationPolicy = DestinationPolicy()
    timeout: float = DEFAULT_TIMEOUT

    @classmethod
    def from_env(cls, env: envlib.Env) -> Transport:
        """Raises SettingError naming CAREBEACON_ALLOW_PRIVATE_DESTINATIONS when its value is bad."""
        return cls(DestinationPolicy.from_env(env))

    async def post(
        self, service: str, url: str, body: bytes, headers: Mapping[str, str] | None = None
    ) -> Reply | Delivery:
        """POST ``body`` (JSON unless ``headers`` say otherwise) to ``url`` once.

        Returns the peer's Reply, or a Delivery when no answer came: PERMANENT for a refused
        destination, TRANSIENT for a timeout, a connection error or a host that does not resolve.
        Never raises for those.
        """
        host = urlsplit(url).hostname or "?"
        try:
            await self.policy.check(url)
        except DestinationError as exc:
            # A name that does not resolve may be a DNS hiccup; an address we refuse stays refused.
            status = DeliveryStatus.TRANSIENT if "does not resolve" in str(exc) else DeliveryStatus.PERMANENT
            return Delivery(status, f"{service}: destination refused: {exc}")
        sent = {"Content-Type": "application/json", "User-Agent": "CareBeacon"} | dict(headers or {})
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        try:
            async with session().post(url, data=body, headers=sent, allow_redirects=False, timeout=timeout) as resp:
                data = await resp.content.read(MAX_BODY)
                return Reply(resp.status, {k.lower(): v for k, v in resp.headers.items()}, data)
        except TimeoutError:
            return Delivery(DeliveryStatus.TRANSIENT, f"{service}: no answer from {host} within {self.timeout:g} s")
        except aiohttp.InvalidURL:
            return Delivery(DeliveryStatus.PERMANENT, f"{service}: the URL is not valid")
        except aiohttp.ClientError as exc:
            # The exception's text can hold the URL: name only its class and the host.
            return Delivery(DeliveryStatus.TRANSIENT, f"{service}: cannot reach {host} ({type(exc).__name__})")


def default_transport() -> Transport:
    """The transport of a channel built without one: the policy comes from the environment.

    Channels are built at routing time from stored config, so this is read per build; the worker
    checks the same variable at boot through ``Transport.from_env``.
    """
    return Transport.from_env(os.environ)


def classify(
    service: str, reply: Reply, url: str, *, gone: frozenset[int] = frozenset(), secrets: tuple[str, ...] = ()
) -> Delivery:
    """The Delivery for a peer's answer (see the module docstring).

    ``url`` and ``secrets`` (tokens sent in headers) are only used to mask an echo of them in the reason.
    """
    status = reply.status
    if 200 <= status < 300:
        return Delivery(DeliveryStatus.DELIVERED, http_status=status)
    detail = f"{service}: HTTP {status}{_reason(reply, url, secrets)}"
    if status == 429:
        return Delivery(DeliveryStatus.RATE_LIMITED, detail, retry_after(reply), status)
    if status in (408, 425) or status >= 500:
        return Delivery(DeliveryStatus.TRANSIENT, detail, retry_after(reply), status)
    if status in (401, 403):
        return Delivery(DeliveryStatus.AUTH, detail, http_status=status)
    if status in gone:
        return Delivery(DeliveryStatus.GONE, detail, http_status=status)
    return Delivery(DeliveryStatus.PERMANENT, detail, http_status=status)


def retry_after(reply: Reply, now: datetime | None = None) -> float | None:
    """Seconds the peer asked us to wait, or None when it did not say.

    Discord's ``X-RateLimit-Reset-After`` (float seconds) wins over ``Retry-After`` (whole
    seconds or an HTTP-date); a JSON body's ``retry_after`` is the last resort, because Discord
    has been seen to send it in milliseconds for webhooks.
    """
    for name in ("x-ratelimit-reset-after", "retry-after"):
        value = reply.headers.get(name)
        if value is not None and (seconds := _seconds(value, now)) is not None:
            return seconds
    document = reply.json()
    if isinstance(document, dict):
        value = document.get("retry_after")
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return max(0.0, float(value))
    return None


def _seconds(value: str, now: datetime | None) -> float | None:
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _reason(reply: Reply, url: str, secrets: tuple[str, ...]) -> str:
    """``: <short reason>`` from the peer's body, or "" when it gave none we can show."""
    document = reply.json()
    reason: Any = None
    if isinstance(document, dict):
        reason = next((document[k] for k in ("message", "error", "title", "detail") if document.get(k)), None)
    elif document is None:
        reason = reply.body[:200].decode("utf-8", "replace")
    if not isinstance(reason, str) or not (reason := _CONTROL.sub(" ", reason).strip()):
        return ""
    reason = redact(reason, url, secrets)
    return ": " + clip(reason, REASON_CHARS)


def redact(text: str, url: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with ``secrets`` and the URL's path and query (where tokens live) masked.

    The whole path goes first; then any path segment or query value of 6 or more characters that
    is not a plain lower-case word (``services``, ``webhooks`` stay readable, tokens do not).
    """
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if len(s) >= 6 and not (s.isalpha() and s.islower())]
    tokens = [parts.path] if len(parts.path) > 1 else []
    tokens += segments + [v for _, v in parse_qsl(parts.query) if len(v) >= 6] + [s for s in secrets if s]
    for token in sorted(tokens, key=len, reverse=True):
        text = text.replace(token, "***")
    return text


# -- shared by the HTTP channels' parse_config and render ------------------------------------


def check_fields(service: str, raw: Mapping[str, Any], known: set[str]) -> None:
    """Raises ConfigError naming the fields ``raw`` has beyond ``known`` (names only, never values)."""
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"{service}: unknown field(s) {', '.join(sorted(unknown))}")


def text_field(service: str, raw: Mapping[str, Any], name: str, *, required: bool = False) -> str | None:
    """A stripped, non-empty string field, or None when it is absent and optional.  Raises ConfigError."""
    value = raw.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{service}: {name} must be a non-empty string")
    return value.strip()


def url_field(service: str, raw: Mapping[str, Any], name: str, policy: DestinationPolicy) -> tuple[str, str]:
    """The URL in field ``name`` and its host, when its form passes ``policy``.  Raises ConfigError.

    The message never echoes the URL: a webhook URL is a credential.
    """
    value = text_field(service, raw, name, required=True)
    assert value is not None
    try:
        host, _ = policy.check_url(value)
    except DestinationError as exc:
        raise ConfigError(f"{service}: {name}: {exc}") from None
    return value, host


def link_field(service: str, raw: Mapping[str, Any], policy: DestinationPolicy) -> str | None:
    """The optional ``link_base`` (our web app's base URL, for links to an alert), without a trailing /."""
    if raw.get("link_base") is None:
        return None
    # Not a destination, only a link people open; the same form check keeps it https in production.
    value, _ = url_field(service, raw, "link_base", policy)
    return value.rstrip("/")


def alert_link(link_base: str | None, alert_id: int) -> str | None:
    return f"{link_base}/alerts/{alert_id}" if link_base else None


def facts(alert: Alert) -> list[tuple[str, str]]:
    """The labelled facts every chat channel shows: patient, metric, observed value, threshold."""
    rows = [("Patient", alert.patient)]
    if alert.metric:
        rows.append(("Metric", alert.metric))
    if alert.observed_value is not None:
        rows.append(("Observed", f"{alert.observed_value:g}"))
    if alert.threshold is not None:
        rows.append(("Threshold", f"{alert.threshold:g}"))
    return rows


def when(alert: Alert) -> datetime:
    """When the condition was seen: the reading's time, else the alert's."""
    return alert.recorded_at or alert.created_at


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, marking the cut with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
