"""Drill 4: the SMTP server goes away, then comes back; the other channel never waits for it.

The outage to survive is 2 minutes.  A drill has one minute, so the outage here lasts through the
first three attempts of every email (Dramatiq's notify backoff: 2-4 s, then 4-8 s; about 10-15 s
in all) and the fourth attempt, 8-16 s later, finds the server back on the same port.  What
matters is the same: the attempts fail as transient, are retried, and land once; the console
channel of the same alerts is delivered at once, on its first attempt.

The second drill hangs the server instead (it accepts connections and never greets): routing
sends to an alert's channels one after the other, so a channel behind a hung one waits.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.helpers import eventually
from tests.resilience.checks import counted
from tests.resilience.conftest import TACHYCARDIA, Drill
from tests.resilience.peers import RestartableSmtp, SilentSmtp

# Attempts that fail while the server is down, per email.
FAILED_ATTEMPTS = 3
# What "not delayed" means for the console channel: from the alert's row to its delivered row.
PROMPT_S = 2.0


def email_config(port: int, ca_file: Path | None = None, timeout: float = 5) -> dict[str, Any]:
    config: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "from": "alerts@carebeacon.test",
        "to": ["ward@hospital.test"],
        "timeout": timeout,
    }
    return config | ({"cert_bundle": str(ca_file)} if ca_file is not None else {})


async def attempts_by_kind(pool: asyncpg.Pool) -> dict[str, dict[int, list[asyncpg.Record]]]:
    """Each channel kind's notify attempts per alert, in order, with how long after the alert's
    creation each one finished (``after_s``; None while in flight)."""
    rows = await pool.fetch(
        "SELECT c.kind, l.alert_id, l.attempt, l.status, l.error_class, l.detail,"
        " extract(epoch FROM l.finished_at - a.created_at)::float AS after_s"
        " FROM notification_logs l JOIN notification_channels c ON c.id = l.channel_id"
        " JOIN alerts a ON a.id = l.alert_id WHERE l.purpose = 'notify' ORDER BY l.alert_id, l.attempt"
    )
    found: dict[str, dict[int, list[asyncpg.Record]]] = {}
    for row in rows:
        found.setdefault(row["kind"], {}).setdefault(row["alert_id"], []).append(row)
    return found


async def selected_alerts(pool: asyncpg.Pool) -> list[int]:
    """The alerts the rules send (warning and up)."""
    return [r["id"] for r in await pool.fetch("SELECT id FROM alerts WHERE severity <> 'info' ORDER BY id")]


@pytest.mark.timeout(60)
async def test_an_smtp_outage_delays_only_email_and_every_email_lands_once_it_is_back(drill: Drill) -> None:
    directory = drill.workdir / "smtp"
    directory.mkdir()
    smtp = RestartableSmtp(directory).start()
    try:
        # The email channel is the alerts' first: routing reaches the console channel after it.
        users = await drill.patients(
            3, {"anomalies": TACHYCARDIA}, channels_first=[("email", email_config(smtp.port, smtp.ca_file))]
        )
        smtp.stop()
        down_at = time.monotonic()
        drill.start_worker("worker", threads=3)
        await drill.request_syncs([p.connection_id for p in users])

        async def every_email_failed_enough() -> bool:
            alerts = await selected_alerts(drill.pool)
            email = (await attempts_by_kind(drill.pool)).get("email", {})
            failed = [sum(r["status"] == "failed" for r in email.get(a, [])) for a in alerts]
            return len(alerts) >= len(users) and min(failed) >= FAILED_ATTEMPTS

        await eventually(every_email_failed_enough, timeout=30, what=f"{FAILED_ATTEMPTS} failed attempts per email")
        smtp.start()
        down_for = time.monotonic() - down_at

        async def every_email_delivered() -> bool:
            email = (await attempts_by_kind(drill.pool)).get("email", {})
            alerts = await selected_alerts(drill.pool)
            return all(email.get(a) and email[a][-1]["status"] == "delivered" for a in alerts)

        await eventually(every_email_delivered, timeout=35, what="every email to land")
    finally:
        smtp.stop()

    alerts = await selected_alerts(drill.pool)
    by_kind = await attempts_by_kind(drill.pool)
    email, console = by_kind["email"], by_kind["console"]
    # Each email: failed (transient) while the server was away, then delivered, once.
    for alert_id in alerts:
        statuses = [(r["status"], r["error_class"]) for r in email[alert_id]]
        assert statuses[-1] == ("delivered", None)
        assert statuses[:-1] == [("failed", "transient")] * (len(statuses) - 1)
        assert len(statuses) > FAILED_ATTEMPTS
    mailed = sorted(int(m.message["X-CareBeacon-Alert"]) for m in smtp.received)
    assert mailed == alerts, "an email was lost or sent twice"
    assert all(m.tls for m in smtp.received)
    # The console channel: delivered on the first attempt, promptly, while email was failing.
    assert {a: [r["status"] for r in console[a]] for a in alerts} == {a: ["delivered"] for a in alerts}
    console_after = {a: console[a][0]["after_s"] for a in alerts}
    assert max(console_after.values()) < PROMPT_S, f"the console channel waited: {console_after}"
    lines = [json.loads(line)["alert_id"] for line in drill.alert_file.read_text().splitlines()]
    assert sorted(lines) == alerts
    gave_up = await drill.pool.fetchval("SELECT count(*) FROM audit_events WHERE action = 'alert.delivery_failed'")
    assert gave_up == 0
    email_after = {a: round(email[a][-1]["after_s"], 1) for a in alerts}
    counted(
        "smtp down, then back",
        smtp_down_s=f"{down_for:.1f}",
        alerts=len(alerts),
        email_attempts={a: len(email[a]) for a in alerts},
        emails_received=len(smtp.received),
        email_delivered_after_s=email_after,
        console_delivered_after_s={a: round(s, 2) for a, s in console_after.items()},
        lost=len(set(alerts) - set(mailed)) + len(set(alerts) - set(lines)),
    )


@pytest.mark.timeout(60)
async def test_a_hung_smtp_server_does_not_hold_up_the_console_channel_of_the_same_alert(drill: Drill) -> None:
    hung = SilentSmtp()
    try:
        # A 10 s timeout (the default is 15): the email channel waits that long for a greeting.
        [patient] = await drill.patients(
            1, {"anomalies": TACHYCARDIA}, channels_first=[("email", email_config(hung.port, timeout=10))]
        )
        drill.start_worker("worker", threads=2)
        await drill.request_syncs([patient.connection_id])

        async def console_delivered() -> list[list[asyncpg.Record]]:
            found = list((await attempts_by_kind(drill.pool)).get("console", {}).values())
            return found if found and found[0][-1]["after_s"] is not None else []

        [console] = await eventually(console_delivered, timeout=40, what="the console delivery")
        [email] = (await attempts_by_kind(drill.pool))["email"].values()
    finally:
        hung.close()

    counted(
        "smtp hung",
        console_delivered_after_s=round(console[0]["after_s"], 2),
        email_attempt=[(r["status"], r["error_class"], r["detail"]) for r in email],
    )
    assert [r["status"] for r in console] == ["delivered"]
    assert console[0]["after_s"] < PROMPT_S, (
        f"the console delivery waited {console[0]['after_s']:.1f} s for the hung email channel:"
        " channels/routing.py route_alert sends to an alert's channels one after the other"
    )
