"""Weekly reports for a simulator patient: rendered with every section and valid PNG charts,
emailed through the real worker to aiosmtpd with the charts inline, once per recipient."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import asyncpg
import dramatiq
import pytest

from db import notification_channels, notification_rules
from db.sealing import Keyring
from pipeline import actors, runtime
from pipeline.analytics import analyse_run
from pipeline.reports import load, render, send_report
from pipeline.reports.charts import sparkline, stacked_bar
from pipeline.sync import run_sync
from pipeline.triggers import request_sync
from tests.fakes.smtp import FakeSmtp
from tests.helpers import eventually, make_patient

ROOT = Path(__file__).resolve().parents[2]


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) of an 8-bit RGB PNG, after checking every chunk's CRC and the pixel data's length."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    at, chunks = 8, {}
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        tag, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length : at + 12 + length])
        assert zlib.crc32(tag + body) == crc, tag
        chunks[tag] = body
        at += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour) == (8, 2) and b"IEND" in chunks
    assert len(zlib.decompress(chunks[b"IDAT"])) == height * (1 + 3 * width)
    return width, height


def test_charts_are_valid_pngs_whatever_the_series() -> None:
    for values in ([], [50.0], [10.0, None, 95.0, 120.0, -5.0], [70.0] * 28):
        assert png_size(sparkline(values)) == (280, 64)
    assert png_size(stacked_bar([(1.0, (255, 0, 0)), (90.0, (0, 255, 0)), (9.0, (0, 0, 255))])) == (280, 18)
    assert png_size(stacked_bar([])) == (280, 18)


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[FakeSmtp]:
    server = FakeSmtp(tmp_path, users={"nurse": "s3cret"}).start()
    yield server
    server.stop()


def email_config(server: FakeSmtp, to: str) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": server.port, "username": "nurse", "password": "s3cret", "timeout": 5,
            "from": "reports@carebeacon.test", "to": [to], "cert_bundle": str(server.ca_file)}  # fmt: skip


async def analysed_patient(pool: asyncpg.Pool, keyring: Keyring, workdir: Path, tenant: str) -> tuple[int, int]:
    """A simulator patient with a fever and a hypo (so alerts and CGM), synced and analysed."""
    tenant_id, user_id, connection_id, _ = await make_patient(pool, keyring, tenant=tenant, alert_file=workdir / "a")
    await pool.execute(
        "UPDATE connections SET settings = $2 WHERE id = $1",
        connection_id,
        {"seed": tenant, "scenarios": ["fever", "hypoglycaemia"]},
    )
    await pool.execute("UPDATE users SET display_name = $2 WHERE id = $1", user_id, "Pat <b>One</b> & Co")
    # Synced and analysed here rather than left to the worker: the data is the setup, not the test.
    run_id = await request_sync(pool, connection_id, "manual")
    rt = runtime.current()
    if await run_sync(pool, rt.keyring, rt.settings, run_id) is None:  # the worker claimed it first

        async def synced() -> bool:
            return await pool.fetchval("SELECT status FROM sync_runs WHERE id = $1", run_id) == "completed"

        await eventually(synced, what="the sync")
    await analyse_run(pool, run_id)
    return tenant_id, user_id


async def pending_report(pool: asyncpg.Pool, user_id: int) -> int:
    end = datetime.now(UTC).date()
    report_id: int = await pool.fetchval(
        "INSERT INTO reports (user_id, period_start, period_end) VALUES ($1, $2, $3) RETURNING id",
        user_id,
        end - timedelta(days=6),
        end,
    )
    return report_id


async def test_a_report_shows_scores_alerts_patterns_and_cgm_with_chart_images_and_escapes_values(
    pool: asyncpg.Pool, worker: dramatiq.Worker, workdir: Path
) -> None:
    _, user_id = await analysed_patient(pool, runtime.current().keyring, workdir, "report-render")
    report_id = await pending_report(pool, user_id)
    # 30 simulated days may hold no pattern that survives the false-discovery control: add one.
    await pool.execute(
        "INSERT INTO correlations (user_id, metric_a, metric_b, lag_days, n, spearman, pearson, p_value, q_value,"
        " ci_low, ci_high, description, period_end) VALUES ($1, 'steps', 'sleep_duration', 0, 30, 0.62, 0.6,"
        " 0.0002, 0.004, 0.33, 0.8, $2, current_date) ON CONFLICT DO NOTHING",
        user_id,
        "On days with more steps, sleep is longer & deeper <usually>",
    )
    async with pool.acquire() as conn:
        data = await load(conn, report_id)
    assert data is not None
    rendered = render(data)

    page = rendered.html
    for section in ("scores", "alerts", "correlations", "cgm", "metrics"):
        assert f"<section id='{section}'>" in page
    assert "Pat &lt;b&gt;One&lt;/b&gt; &amp; Co" in page and "<b>One</b>" not in page
    assert "Fever" in page or "fever" in page.lower()
    assert "In range (70–180)" in page and "GMI" in page
    assert "On days with more steps, sleep is longer &amp; deeper &lt;usually&gt;" in page
    # One sparkline per score domain, one bar of glucose ranges; each named in the HTML by its cid.
    domains = set(data.details["score_series"])
    assert {"sleep", "activity", "glycemic"} <= domains
    assert set(rendered.images) == {f"score-{d}@carebeacon" for d in domains} | {"cgm-ranges@carebeacon"}
    for cid, png in rendered.images.items():
        assert f'src="cid:{cid}"' in page
        assert png_size(png)[0] == 280
    assert "Scores" in rendered.text and "Alerts this week" in rendered.text

    patient_copy = render(data, audience="patient", images="data")
    assert patient_copy.html.startswith("<!doctype html>") and "<h1>Your week</h1>" in patient_copy.html
    assert patient_copy.html.count('src="data:image/png;base64,') == len(rendered.images)


def related_images(message: EmailMessage) -> tuple[str, dict[str, bytes]]:
    """The HTML and its inline images (Content-ID → PNG) of a multipart/alternative report email."""
    assert message.get_content_type() == "multipart/alternative"
    plain, related = message.get_payload()  # type: ignore[misc]
    assert plain.get_content_type() == "text/plain"
    assert related.get_content_type() == "multipart/related"
    html_part, *images = related.get_payload()
    assert html_part.get_content_type() == "text/html"
    found = {}
    for image in images:
        assert image.get_content_type() == "image/png"
        assert image.get_content_disposition() == "inline"
        found[image["Content-ID"].strip("<>")] = image.get_content()
    return html_part.get_content(), found


async def test_the_report_actor_emails_the_care_team_and_the_opted_in_patient_once_with_charts_inline(
    pool: asyncpg.Pool, worker: dramatiq.Worker, workdir: Path, smtp: FakeSmtp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAREBEACON_ALLOW_PRIVATE_DESTINATIONS", "true")  # aiosmtpd on 127.0.0.1
    keyring = runtime.current().keyring
    tenant_id, user_id = await analysed_patient(pool, keyring, workdir, "report-mail")
    async with pool.acquire() as conn:
        ward = await notification_channels.create_channel(
            conn, keyring, tenant_id=tenant_id, kind="email", label="ward", config=email_config(smtp, "ward@h.test")
        )
        own = await notification_channels.create_channel(
            conn, keyring, tenant_id=tenant_id, kind="email", label="pat", config=email_config(smtp, "pat@home.test")
        )
        unused = await notification_channels.create_channel(
            conn, keyring, tenant_id=tenant_id, kind="email", label="alerts", config=email_config(smtp, "x@h.test")
        )
        await notification_rules.create_rule(
            conn, tenant_id=tenant_id, name="reports", channel_id=ward, categories=["report"]
        )
        await notification_rules.create_rule(
            conn, tenant_id=tenant_id, name="my report", channel_id=own, owner_user_id=user_id, categories=["report"]
        )
        # A rule for clinical alerts only: its channel gets no report.
        await notification_rules.create_rule(
            conn, tenant_id=tenant_id, name="alerts", channel_id=unused, categories=["clinical"]
        )
    report_id = await pending_report(pool, user_id)

    async def two_emails() -> bool:
        return len(smtp.received) >= 2

    # Re-sent while nothing arrives: a replay is safe by design, and another test session sharing
    # this Redis database may take a message.
    for _ in range(3):
        actors.report.send(report_id)
        try:
            await eventually(two_emails, timeout=10, what="the report emails")
            break
        except AssertionError:
            continue
    assert len(smtp.received) == 2
    by_rcpt = {r.rcpt_tos[0]: r for r in smtp.received}
    assert set(by_rcpt) == {"ward@h.test", "pat@home.test"}
    ward_mail = by_rcpt["ward@h.test"].message
    assert by_rcpt["ward@h.test"].tls and by_rcpt["ward@h.test"].login == "nurse"
    assert ward_mail["Subject"].startswith("Weekly health report: Pat <b>One</b> & Co")
    assert ward_mail["X-CareBeacon-Report"] == str(report_id)
    page, images = related_images(ward_mail)
    assert "<section id='cgm'>" in page and len(images) >= 5
    for cid, png in images.items():
        assert f'src="cid:{cid}"' in page
        assert png_size(png)[0] == 280
    pat_page, _ = related_images(by_rcpt["pat@home.test"].message)
    assert "<h1>Your week</h1>" in pat_page

    assert await pool.fetchval("SELECT status FROM reports WHERE id = $1", report_id) == "ready"
    ready = await pool.fetchval(
        "SELECT count(*) FROM events WHERE type = 'report.ready' AND (payload->'data'->>'report_id')::bigint = $1",
        report_id,
    )
    assert ready == 1
    # A replayed message finds the report ready and already emailed: nothing more goes out.
    again = await send_report(pool, keyring, report_id)
    assert (again.sent, again.failed, again.retry) == (0, 0, 0)
    assert len(smtp.received) == 2


async def test_carebeacon_report_writes_a_self_contained_html_file(
    pool: asyncpg.Pool, worker: dramatiq.Worker, workdir: Path
) -> None:
    rt = runtime.current()
    _, user_id = await analysed_patient(pool, rt.keyring, workdir, "report-cli")
    out = workdir / "report.html"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE", "REDIS", "CAREBEACON_"))}
    env |= {"DATABASE_URL": rt.services.database_url, "REDIS_URL": rt.services.redis_url,
            "CAREBEACON_SEAL_KEYS": Keyring.new_entry("cli"), "CAREBEACON_DATA_DIR": str(workdir / "data")}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "report", str(user_id), "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"wrote {out}")
    page = out.read_text()
    assert "<section id='scores'>" in page
    assert 'src="data:image/png;base64,' in page
    assert 'src="cid:' not in page

    missing = subprocess.run(
        [sys.executable, "-m", "bot.cli", "report", "987654321", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert missing.returncode == 1 and "no user 987654321" in missing.stderr
