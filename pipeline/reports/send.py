"""Email a ready report to its recipients (``db.reports.recipients``), each at most once.

The report's row lock (SKIP LOCKED) keeps a second worker off it while the emails go out; each
email sent is recorded (an audit event) in the same transaction, so a replayed message sends
only to the recipients still missing.  A worker that dies mid-send rolls back its records and
the retry sends again: a duplicate email is the price, never a lost one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg

from channels import ConfigError, DeliveryStatus, TransientDeliveryError, Transport
from db import logcontext, reports
from db.sealing import Keyring, SealError
from pipeline.metrics import REPORT_EMAILS
from pipeline.reports.content import load
from pipeline.reports.mail import ReportEmail, as_rendered
from pipeline.reports.render import render

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Emailed:
    sent: int = 0
    failed: int = 0  # for good: a bad config, or a refusal retrying cannot fix
    retry: int = 0  # for now: the actor raises so Dramatiq tries again


async def send_report(
    pool: asyncpg.Pool, keyring: Keyring, report_id: int, *, transport: Transport | None = None
) -> Emailed:
    """Email the report where it has not gone yet.  Raises TransientDeliveryError (after recording
    what did go out) when a recipient may accept it later.  Nothing to do for a report that is
    unknown, not ready, held by another worker, or has no recipients."""
    sent = failed = retry = 0
    async with pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval(
            "SELECT true FROM reports WHERE id = $1 AND status = 'ready' FOR UPDATE SKIP LOCKED", report_id
        ):
            return Emailed()
        data = await load(conn, report_id)
        assert data is not None
        done = await reports.emailed_channels(conn, report_id)
        for recipient in await reports.recipients(conn, data.report):
            if recipient.channel.id in done:
                continue
            with logcontext.bound(report_id=report_id, channel_id=recipient.channel.id, user_id=data.report.user_id):
                try:
                    email = ReportEmail.parse_config(recipient.channel.config(keyring), transport=transport)
                except (ConfigError, SealError) as exc:
                    log.warning("report %s: channel %s cannot send: %s", report_id, recipient.channel.id, exc)
                    failed += 1
                    REPORT_EMAILS.labels(recipient.audience, "permanent").inc()
                    continue
                delivery = await email.send(as_rendered(report_id, render(data, audience=recipient.audience)))
                REPORT_EMAILS.labels(recipient.audience, delivery.status.value).inc()
                if delivery.status is DeliveryStatus.DELIVERED:
                    await reports.record_emailed(conn, data.report, recipient, delivery.detail)
                    sent += 1
                    log.info(
                        "report %s emailed to channel %s (%s)", report_id, recipient.channel.id, recipient.audience
                    )
                elif delivery.retryable:
                    retry += 1
                    log.warning(
                        "report %s: channel %s will retry: %s", report_id, recipient.channel.id, delivery.detail
                    )
                else:
                    failed += 1
                    log.warning("report %s: channel %s failed: %s", report_id, recipient.channel.id, delivery.detail)
    if retry:
        raise TransientDeliveryError(f"report {report_id}: {retry} recipient(s) to retry")
    return Emailed(sent, failed, retry)
