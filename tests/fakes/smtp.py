"""A real SMTP server on 127.0.0.1 (aiosmtpd) with STARTTLS, login, and replies a test chooses.

The certificate is self-signed for ``localhost`` and ``127.0.0.1``; ``ca_file`` is what a client
trusts to reach it, as a channel's ``cert_bundle`` would name a private CA's bundle.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import socket
import ssl
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """Write ``cert.pem`` and ``key.pem`` for localhost and 127.0.0.1; returns their paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@dataclass(frozen=True)
class Received:
    peer: Any  # (host, port) of the client's connection: one value per SMTP session
    tls: bool
    login: str | None
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


@dataclass
class Handler:
    """aiosmtpd's handler hooks.  Tests set the replies; everything accepted lands in ``received``."""

    received: list[Received] = field(default_factory=list)
    rcpt_replies: dict[str, str] = field(default_factory=dict)  # address → reply instead of 250
    data_reply: str | None = None  # e.g. "451 4.3.0 try later"
    data_delay: float = 0.0

    async def handle_RCPT(  # noqa: N802  (aiosmtpd's hook name)
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.rcpt_replies:
            return self.rcpt_replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        if self.data_reply is not None:
            return self.data_reply
        assert isinstance(envelope.content, bytes) and envelope.mail_from is not None
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        self.received.append(
            Received(session.peer, session.ssl is not None, login, envelope.mail_from, list(envelope.rcpt_tos), parsed)
        )
        return "250 OK"


class FakeSmtp:
    """``FakeSmtp(directory).start()``; ``stop()`` when done.  ``port`` and ``ca_file`` say how to reach it."""

    def __init__(
        self,
        directory: Path,
        *,
        starttls: bool = True,
        users: dict[str, str] | None = None,
    ) -> None:
        self.handler = Handler()
        self.users = users or {}
        self.ca_file, key_file = self_signed_certificate(directory)
        context: ssl.SSLContext | None = None
        if starttls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.ca_file, key_file)
        # aiosmtpd's Controller connects back to its own port, so port 0 will not do: pick one first.
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port: int = probe.getsockname()[1]
        self.controller = Controller(
            self.handler,
            hostname="127.0.0.1",
            port=self.port,
            tls_context=context,
            require_starttls=starttls,
            authenticator=self._authenticate if self.users else None,
            auth_require_tls=True,
        )

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and self.users.get(data.login.decode()) == data.password.decode()
        # handled=False: aiosmtpd then answers a failure itself (535), as a real server does.
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    def start(self) -> FakeSmtp:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
