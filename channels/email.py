"""The email channel: one multipart/alternative message per alert over SMTP with aiosmtplib.

TLS is on by default: STARTTLS is required (never the opportunistic "upgrade if offered", which
a man in the middle strips), or implicit TLS on port 465 with ``implicit_tls``.  Plain SMTP
(``starttls: "off"``) is for a local catch-all in development and is accepted only when the
deployment allows private destinations: a tenant's config alone cannot send health data, or a
password, in clear text.  The host is checked like any destination, at creation and per send.

``send_many`` carries a batch over one connection; ``send`` is a batch of one.
"""

from __future__ import annotations

import hashlib
import html
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.errors import MessageError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any, ClassVar

import aiosmtplib

from channels import http
from channels.base import Channel, Delivery, DeliveryStatus, Rendered
from channels.destinations import DestinationError
from channels.errors import ConfigError
from db.alerts import Alert

_FIELDS = {"host", "port", "username", "password", "from", "to", "starttls", "implicit_tls", "cert_bundle", "timeout"}
MAX_RECIPIENTS = 50
DEFAULT_TIMEOUT = 15.0  # per connect and per SMTP command; well inside the delivery lease
ALERT_HEADER = "X-CareBeacon-Alert"


@dataclass(frozen=True, slots=True)
class EmailConfig:
    host: str
    port: int
    sender: str
    to: tuple[str, ...]
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = True
    implicit_tls: bool = False
    cert_bundle: str | None = None  # a CA bundle (PEM) to trust instead of the system's
    timeout: float = DEFAULT_TIMEOUT


class Email(Channel):
    kind = "email"
    secret_fields: ClassVar[tuple[str, ...]] = ("password",)

    def __init__(self, config: EmailConfig, transport: http.Transport) -> None:
        self.config = config
        self.policy = transport.policy  # only the SSRF policy: SMTP has timeouts of its own

    @classmethod
    def parse_config(cls, raw: dict[str, Any], *, transport: http.Transport | None = None) -> Email:
        """Raises ConfigError.  ``transport`` gives the destination policy (from the environment by default)."""
        transport = transport or http.default_transport()
        policy = transport.policy
        unknown = set(raw) - _FIELDS
        if unknown:
            raise ConfigError(f"email: unknown field(s) {', '.join(sorted(unknown))}")
        host = _text(raw, "host", required=True)
        assert host is not None
        implicit_tls = raw.get("implicit_tls", False)
        if not isinstance(implicit_tls, bool):
            raise ConfigError("email: implicit_tls must be true or false")
        starttls = raw.get("starttls", "required")
        if starttls not in ("required", "off"):
            raise ConfigError('email: starttls must be "required" or "off"')
        if implicit_tls and "starttls" in raw:
            raise ConfigError("email: starttls does not apply with implicit_tls")
        if starttls == "off" and not policy.allow_private:
            raise ConfigError('email: starttls "off" sends in clear text; this deployment does not allow it')
        port = raw.get("port", 465 if implicit_tls else 587)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ConfigError("email: port must be an integer from 1 to 65535")
        try:
            # Form only here (no DNS); the full check runs before every send.
            policy.check_url(f"https://{_bracketed(host)}:{port}/")
        except DestinationError as exc:
            raise ConfigError(f"email: host: {exc}") from None
        username, password = _text(raw, "username"), _text(raw, "password")
        if (username is None) != (password is None):
            raise ConfigError("email: give both username and password, or neither")
        sender = _address(raw.get("from"), "from")
        to = raw.get("to")
        if isinstance(to, str):
            to = [to]
        if not isinstance(to, list) or not 0 < len(to) <= MAX_RECIPIENTS:
            raise ConfigError(f"email: to must be a list of 1 to {MAX_RECIPIENTS} addresses")
        recipients = tuple(dict.fromkeys(_address(item, "to") for item in to))
        timeout = raw.get("timeout", DEFAULT_TIMEOUT)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 60:
            raise ConfigError("email: timeout must be a number of seconds above 0, at most 60")
        config = EmailConfig(
            host,
            port,
            sender,
            recipients,
            username,
            password,
            starttls=not implicit_tls and starttls == "required",
            implicit_tls=implicit_tls,
            cert_bundle=_text(raw, "cert_bundle"),
            timeout=float(timeout),
        )
        return cls(config, transport)

    def render(self, alert: Alert) -> Rendered:
        when = (alert.recorded_at or alert.created_at).isoformat()
        # One line: a header may not hold a line break, and a summary's title can.
        subject = " ".join(f"[{alert.severity.upper()}] {alert.patient}: {alert.title}".split())[:250]
        rows: list[tuple[str, str]] = [("Patient", alert.patient), ("Severity", alert.severity)]
        if alert.metric is not None:
            rows.append(("Metric", alert.metric))
        if alert.observed_value is not None:
            rows.append(("Observed", f"{alert.observed_value:g}"))
        if alert.threshold is not None:
            rows.append(("Threshold", f"{alert.threshold:g}"))
        rows += [("Recorded", when), ("Alert", str(alert.id))]
        text = "\n".join([alert.title, "", alert.body, "", *(f"{k}: {v}" for k, v in rows)]) + "\n"
        # Every value is escaped: titles and bodies carry readings and names we did not write.
        cells = "".join(f"<tr><th align='left'>{k}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
        body_html = (
            f"<!doctype html><html><body><h2>{html.escape(alert.title)}</h2>"
            f"<p>{html.escape(alert.body)}</p><table>{cells}</table></body></html>\n"
        )
        payload = {"alert_id": alert.id, "subject": subject, "text": text, "html": body_html}
        return Rendered(alert.title, text, alert.severity, payload)

    async def send(self, message: Rendered) -> Delivery:
        return (await self.send_many([message]))[0]

    async def send_many(self, messages: Sequence[Rendered]) -> list[Delivery]:
        """One Delivery per message, in order, over one SMTP connection.  Never raises for SMTP,
        TLS or network failures: a failure to connect, secure or log in fails every message."""
        cfg = self.config
        if not messages:
            return []
        try:
            await self.policy.check(f"https://{_bracketed(cfg.host)}:{cfg.port}/")
        except DestinationError as exc:
            # A name that does not resolve may be a DNS hiccup; an address we refuse stays refused.
            status = DeliveryStatus.TRANSIENT if "does not resolve" in str(exc) else DeliveryStatus.PERMANENT
            return [Delivery(status, f"email: host: {exc}")] * len(messages)
        try:
            tls_context = ssl.create_default_context(cafile=cfg.cert_bundle)
        except (OSError, ssl.SSLError):
            return [Delivery(DeliveryStatus.PERMANENT, "email: cannot load cert_bundle")] * len(messages)
        outcomes: list[Delivery] = []
        try:
            smtp = aiosmtplib.SMTP(
                hostname=cfg.host,
                port=cfg.port,
                username=cfg.username,
                password=cfg.password,
                use_tls=cfg.implicit_tls,
                start_tls=cfg.starttls,
                tls_context=tls_context,
                timeout=cfg.timeout,
            )
            async with smtp:
                for message in messages:
                    outcomes.append(await self._send_one(smtp, message))
        except (aiosmtplib.SMTPException, OSError) as exc:
            # Connecting, TLS, login, or the connection dropping mid-batch: whatever is left fails alike.
            failed = _classify(exc)
            outcomes += [failed] * (len(messages) - len(outcomes))
        return outcomes

    async def _send_one(self, smtp: aiosmtplib.SMTP, message: Rendered) -> Delivery:
        """Raises only for errors that leave the connection unusable."""
        try:
            mail = self._compose(message)
        except ValueError as exc:  # a header the email package will not write
            return Delivery(DeliveryStatus.PERMANENT, f"email: cannot compose the message ({_short(str(exc))})")
        try:
            refused, _ = await smtp.send_message(mail)
        except (aiosmtplib.SMTPRecipientsRefused, aiosmtplib.SMTPResponseException) as exc:
            return _classify(exc)  # aiosmtplib sent RSET: the connection goes on to the next message
        if refused:
            # Some recipients have it: retrying would page them twice, so it counts as delivered.
            detail = ", ".join(f"{rcpt} ({reply.code})" for rcpt, reply in sorted(refused.items()))
            return Delivery(DeliveryStatus.DELIVERED, f"email: refused for {detail}")
        return Delivery(DeliveryStatus.DELIVERED)

    def _compose(self, message: Rendered) -> EmailMessage:
        alert_id = str(message.payload["alert_id"])
        return self._mail(message, f"alert-{alert_id}", {ALERT_HEADER: alert_id})

    def _mail(self, message: Rendered, local_id: str, headers: dict[str, str]) -> EmailMessage:
        """The payload's plain text and HTML, to the channel's recipients, with ``headers``."""
        cfg, payload = self.config, message.payload
        mail = EmailMessage()
        mail["Subject"] = payload["subject"]
        mail["From"] = cfg.sender
        mail["To"] = ", ".join(cfg.to)
        mail["Date"] = formatdate(localtime=False, usegmt=True)
        # Stable per message and destination, so a receiving system can drop the copy a retry sends.
        digest = hashlib.sha256("\n".join((cfg.sender, *cfg.to)).encode()).hexdigest()[:16]
        mail["Message-ID"] = f"<{local_id}.{digest}@{cfg.sender.rpartition('@')[2]}>"
        for name, value in headers.items():
            mail[name] = value
        mail.set_content(payload["text"])
        mail.add_alternative(payload["html"], subtype="html")
        return mail


def _classify(exc: Exception) -> Delivery:
    """SMTP replies: 4xx transient, 5xx permanent (535 and other login refusals: auth)."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        detail = ", ".join(f"{r.recipient} ({r.code})" for r in exc.recipients)
        status = DeliveryStatus.TRANSIENT if any(400 <= c < 500 for c in codes) else DeliveryStatus.PERMANENT
        return Delivery(status, f"email: every recipient refused: {detail}")
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        status = DeliveryStatus.TRANSIENT if 400 <= exc.code < 500 else DeliveryStatus.AUTH
        return Delivery(status, f"email: login refused ({exc.code})")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        status = DeliveryStatus.PERMANENT if 500 <= exc.code < 600 else DeliveryStatus.TRANSIENT
        return Delivery(status, f"email: server replied {exc.code} {_short(exc.message)}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return Delivery(DeliveryStatus.PERMANENT, f"email: TLS certificate not trusted ({exc.verify_message})")
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return Delivery(DeliveryStatus.TRANSIENT, "email: timed out")
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected | aiosmtplib.SMTPConnectError | OSError):
        return Delivery(DeliveryStatus.TRANSIENT, f"email: connection failed ({_short(str(exc))})")
    if "AUTH" in str(exc):
        # The server offers no login (aiosmtpd without TLS, for one): the config cannot work.
        return Delivery(DeliveryStatus.AUTH, f"email: {_short(str(exc))}")
    # What is left is the server lacking what the config requires, STARTTLS above all.
    return Delivery(DeliveryStatus.PERMANENT, f"email: {_short(str(exc))}")


def _text(raw: dict[str, Any], key: str, *, required: bool = False) -> str | None:
    value = raw.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or any(c in value for c in "\r\n\0"):
        raise ConfigError(f"email: {key} must be a non-empty string on one line")
    return value.strip()


def _address(value: Any, key: str) -> str:
    """A bare addr-spec (``nurse@example.org``), checked by the standard library's parser."""
    if not isinstance(value, str):
        raise ConfigError(f"email: {key} must be an email address")
    try:
        parsed = Address(addr_spec=value.strip())
    except (ValueError, IndexError, MessageError):
        raise ConfigError(f"email: {key} address {value[:100]!r} is not valid") from None
    if not parsed.domain:
        raise ConfigError(f"email: {key} address {value[:100]!r} is not valid")
    return parsed.addr_spec


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _short(text: str) -> str:
    return " ".join(text.split())[:200]
