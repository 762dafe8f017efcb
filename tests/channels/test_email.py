"""The email channel against a real SMTP server (aiosmtpd): STARTTLS, login, batches, refusals."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest

from channels import CHANNELS, ConfigError, DeliveryStatus, build_channel
from channels.destinations import DestinationPolicy
from channels.email import Email
from channels.http import Transport
from db.alerts import Alert
from tests.fakes.smtp import FakeSmtp

LOCAL = Transport(DestinationPolicy(allow_private=True))
ALERT = Alert(
    id=42,
    user_id=3,
    tenant_id=1,
    patient="Pat <script>alert(1)</script> & Co",
    category="clinical",
    severity="critical",
    metric="spo2",
    title="Sauerstoffsättigung <b>low</b> & falling",
    body="spo2 86 % <script>x()</script> & below 90",
    observed_value=86.0,
    threshold=90.0,
    recorded_at=datetime(2026, 11, 22, 7, tzinfo=UTC),
    created_at=datetime(2026, 11, 22, 7, 5, tzinfo=UTC),
)


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[FakeSmtp]:
    server = FakeSmtp(tmp_path, users={"nurse": "s3cret"}).start()
    yield server
    server.stop()


def config(server: FakeSmtp, **changes: Any) -> dict[str, Any]:
    base = {
        "host": "127.0.0.1",
        "port": server.port,
        "username": "nurse",
        "password": "s3cret",
        "from": "alerts@carebeacon.test",
        "to": ["ward@hospital.test", "oncall@hospital.test"],
        "cert_bundle": str(server.ca_file),
        "timeout": 5,
    }
    return {k: v for k, v in (base | changes).items() if v is not None}


def channel(server: FakeSmtp, **changes: Any) -> Email:
    return Email.parse_config(config(server, **changes), transport=LOCAL)


def html_part(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    return str(part.get_content())


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ({"from": "a@b.test", "to": ["c@d.test"]}, "email: host must be a non-empty string on one line"),
        ({"host": "mx\r\nx", "from": "a@b.test", "to": ["c@d.test"]}, "email: host must be a non-empty string"),
        ({"host": "mx.test", "from": "nobody", "to": ["c@d.test"]}, "email: from address 'nobody' is not valid"),
        ({"host": "mx.test", "from": "a@b.test", "to": []}, "email: to must be a list of 1 to 50 addresses"),
        ({"host": "mx.test", "from": "a@b.test", "to": ["x@y.test, z@w.test"]}, "email: to address"),
        ({"host": "mx.test", "from": "a@b.test\r\nBcc: e@vil.test", "to": ["c@d.test"]}, "email: from address"),
        ({"host": "mx.test", "from": "a@b.test", "to": "c@d.test", "port": 0}, "email: port must be an integer"),
        ({"host": "mx.test", "from": "a@b.test", "to": "c@d.test", "username": "u"}, "give both username and"),
        ({"host": "mx.test", "from": "a@b.test", "to": "c@d.test", "starttls": "maybe"}, 'starttls must be "required"'),
        ({"host": "mx.test", "from": "a@b.test", "to": "c@d.test", "starttls": "off"}, "does not allow it"),
        (
            {"host": "mx.test", "from": "a@b.test", "to": "c@d.test", "implicit_tls": True, "starttls": "required"},
            "starttls does not apply with implicit_tls",
        ),
        ({"host": "mx.test", "from": "a@b.test", "to": "c@d.test", "timeout": 600}, "timeout must be a number"),
        ({"host": "mx.test", "from": "a@b.test", "to": "c@d.test", "tls": True}, "unknown field(s) tls"),
    ],
)
def test_invalid_config_is_refused_with_a_message_fit_for_the_user(raw: dict[str, Any], error: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_channel("email", raw)
    assert str(caught.value).startswith("email: ") and error in str(caught.value)


def test_email_is_registered_and_its_config_hides_the_password() -> None:
    built = build_channel(
        "email", {"host": "mx.test", "from": "a@b.test", "to": "c@d.test", "username": "u", "password": "hunter2"}
    )
    assert CHANNELS["email"] is Email and isinstance(built, Email)
    assert "hunter2" not in repr(built.config) and Email.secret_fields == ("password",)
    assert built.config.port == 587 and built.config.starttls and not built.config.implicit_tls
    implicit = Email.parse_config({"host": "mx.test", "from": "a@b.test", "to": "c@d.test", "implicit_tls": True})
    assert implicit.config.port == 465 and not implicit.config.starttls


def test_render_is_pure_and_escapes_every_field_in_the_html_part() -> None:
    rendered = build_channel("email", {"host": "mx.test", "from": "a@b.test", "to": "c@d.test"}).render(ALERT)

    html = rendered.payload["html"]
    assert "<script>" not in html and "<b>low</b>" not in html
    assert "Pat &lt;script&gt;alert(1)&lt;/script&gt; &amp; Co" in html
    assert "&lt;b&gt;low&lt;/b&gt; &amp; falling" in html and "86 % &lt;script&gt;x()&lt;/script&gt; &amp;" in html
    assert rendered.payload["text"].startswith("Sauerstoffsättigung <b>low</b> & falling\n")
    assert rendered.payload["subject"] == f"[CRITICAL] {ALERT.patient}: {ALERT.title}"


async def test_an_alert_arrives_over_starttls_after_login_as_multipart_with_escaped_html(smtp: FakeSmtp) -> None:
    sender = channel(smtp)

    outcome = await sender.send(sender.render(ALERT))

    assert outcome.status is DeliveryStatus.DELIVERED and outcome.detail is None
    [got] = smtp.received
    assert got.tls and got.login == "nurse"
    assert got.mail_from == "alerts@carebeacon.test"
    assert got.rcpt_tos == ["ward@hospital.test", "oncall@hospital.test"]
    message = got.message
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert message["Subject"] == f"[CRITICAL] {ALERT.patient}: {ALERT.title}"  # non-ASCII survives encoding
    assert message["X-CareBeacon-Alert"] == "42"
    assert message["Message-ID"].startswith("<alert-42.") and message["Message-ID"].endswith("@carebeacon.test>")
    assert abs((parsedate_to_datetime(message["Date"]) - datetime.now(UTC)).total_seconds()) < 60
    assert "<script>" not in html_part(message) and "&lt;script&gt;" in html_part(message)
    body = message.get_body(("plain",))
    assert body is not None and "spo2 86 % <script>x()</script> & below 90" in body.get_content()


async def test_a_title_with_line_breaks_makes_a_one_line_subject(smtp: FakeSmtp) -> None:
    sender = channel(smtp)

    outcome = await sender.send(sender.render(dataclasses.replace(ALERT, title="3 alerts\nfor Pat\r\nBcc: x@y.test")))

    assert outcome.status is DeliveryStatus.DELIVERED
    assert smtp.received[0].message["Subject"].endswith(": 3 alerts for Pat Bcc: x@y.test")
    assert smtp.received[0].message["Bcc"] is None


async def test_a_batch_of_three_travels_over_one_connection(smtp: FakeSmtp) -> None:
    sender = channel(smtp)
    alerts = [dataclasses.replace(ALERT, id=n) for n in (1, 2, 3)]

    outcomes = await sender.send_many([sender.render(a) for a in alerts])

    assert [o.status for o in outcomes] == [DeliveryStatus.DELIVERED] * 3
    assert [r.message["X-CareBeacon-Alert"] for r in smtp.received] == ["1", "2", "3"]
    assert len({r.peer for r in smtp.received}) == 1  # one SMTP session carried all three


async def test_a_refused_message_in_a_batch_does_not_stop_the_others(smtp: FakeSmtp) -> None:
    sender = channel(smtp)
    first, second = (sender.render(dataclasses.replace(ALERT, id=n)) for n in (1, 2))
    smtp.handler.data_reply = "451 4.3.0 try later"
    refused = await sender.send(first)
    smtp.handler.data_reply = None

    outcomes = await sender.send_many([second])

    assert refused.status is DeliveryStatus.TRANSIENT and refused.detail == "email: server replied 451 4.3.0 try later"
    assert outcomes[0].status is DeliveryStatus.DELIVERED


@pytest.mark.parametrize(
    ("reply", "status"),
    [("451 4.3.0 try later", DeliveryStatus.TRANSIENT), ("554 5.6.0 message refused", DeliveryStatus.PERMANENT)],
)
async def test_a_data_reply_is_transient_when_4xx_and_permanent_when_5xx(
    smtp: FakeSmtp, reply: str, status: DeliveryStatus
) -> None:
    smtp.handler.data_reply = reply
    sender = channel(smtp)

    outcome = await sender.send(sender.render(ALERT))

    assert outcome.status is status and outcome.detail == f"email: server replied {reply}"


async def test_a_wrong_password_is_an_auth_failure_and_the_password_is_never_echoed(smtp: FakeSmtp) -> None:
    sender = channel(smtp, password="wrong-pw")

    outcome = await sender.send(sender.render(ALERT))

    assert outcome.status is DeliveryStatus.AUTH and outcome.detail == "email: login refused (535)"
    assert smtp.received == []


async def test_some_refused_recipients_still_count_as_delivered_and_are_named(smtp: FakeSmtp) -> None:
    smtp.handler.rcpt_replies["oncall@hospital.test"] = "550 5.1.1 no such user"
    sender = channel(smtp)

    outcome = await sender.send(sender.render(ALERT))

    assert outcome.status is DeliveryStatus.DELIVERED
    assert outcome.detail == "email: refused for oncall@hospital.test (550)"
    assert smtp.received[0].rcpt_tos == ["ward@hospital.test"]


@pytest.mark.parametrize(
    ("replies", "status"),
    [
        (("550 5.1.1 no such user", "550 5.1.1 no such user"), DeliveryStatus.PERMANENT),
        (("550 5.1.1 no such user", "450 4.2.1 mailbox busy"), DeliveryStatus.TRANSIENT),
    ],
)
async def test_every_recipient_refused_is_classified_by_their_codes(
    smtp: FakeSmtp, replies: tuple[str, str], status: DeliveryStatus
) -> None:
    smtp.handler.rcpt_replies.update(zip(["ward@hospital.test", "oncall@hospital.test"], replies, strict=True))
    sender = channel(smtp)

    outcome = await sender.send(sender.render(ALERT))

    assert outcome.status is status
    assert outcome.detail is not None and outcome.detail.startswith("email: every recipient refused: ")


async def test_a_slow_server_is_a_transient_timeout(smtp: FakeSmtp) -> None:
    smtp.handler.data_delay = 3.0
    sender = channel(smtp, timeout=0.5)

    outcome = await sender.send(sender.render(ALERT))

    assert outcome.status is DeliveryStatus.TRANSIENT and outcome.detail == "email: timed out"


async def test_a_server_without_starttls_fails_when_starttls_is_required(tmp_path: Path) -> None:
    plain = FakeSmtp(tmp_path, starttls=False).start()
    try:
        sender = channel(plain, username=None, password=None)
        outcome = await sender.send(sender.render(ALERT))
    finally:
        plain.stop()

    assert outcome.status is DeliveryStatus.PERMANENT
    assert outcome.detail is not None and "STARTTLS" in outcome.detail
    assert plain.received == []


async def test_starttls_off_reaches_a_plain_server_only_where_the_deployment_allows_it(tmp_path: Path) -> None:
    plain = FakeSmtp(tmp_path, starttls=False).start()
    try:
        sender = channel(plain, username=None, password=None, starttls="off")
        outcome = await sender.send(sender.render(ALERT))
    finally:
        plain.stop()

    assert outcome.status is DeliveryStatus.DELIVERED and not plain.received[0].tls


async def test_an_untrusted_certificate_is_refused(smtp: FakeSmtp) -> None:
    sender = channel(smtp, cert_bundle=None)  # the system's CAs do not know the self-signed one

    outcome = await sender.send(sender.render(ALERT))

    assert outcome.status is DeliveryStatus.PERMANENT
    assert outcome.detail is not None and "certificate" in outcome.detail
    assert smtp.received == []


async def test_a_private_host_is_refused_at_send_time_by_the_strict_policy(smtp: FakeSmtp) -> None:
    sender = Email.parse_config(config(smtp), transport=Transport())  # the strict policy

    outcome = await sender.send(sender.render(ALERT))

    assert outcome.status is DeliveryStatus.PERMANENT and outcome.detail is not None
    assert outcome.detail.startswith("email: host: ") and "non-public" in outcome.detail
    assert smtp.received == []


async def test_nothing_listening_is_a_transient_connection_failure(smtp: FakeSmtp) -> None:
    sender = channel(smtp, port=1)

    outcome = await sender.send(sender.render(ALERT))

    assert outcome.status is DeliveryStatus.TRANSIENT
    assert outcome.detail is not None and outcome.detail.startswith("email: connection failed")
