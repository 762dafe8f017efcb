"""/connect apple in chat: a one-time link to the upload page, never to a sign-in."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient

from pipeline.providers import PROVIDERS
from pipeline.providers.apple_health import AppleHealth
from tests.bot.chat.conftest import PUBLIC_URL, Clinic, text_of
from tests.bot.chat.test_commands import run
from tests.fakes.apple_health import export_xml, export_zip
from tests.fakes.slack_api import FakeSlackApi


async def test_connect_apple_hands_out_an_upload_link_that_imports_the_export_for_that_person(
    client: TestClient,
    slack_api: FakeSlackApi,
    clinic: Clinic,
    pool: asyncpg.Pool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(PROVIDERS, "apple_health", AppleHealth(tmp_path))
    listing = await run(client, slack_api, clinic, clinic.patient.chat_user, "/connect")
    reply = await run(client, slack_api, clinic, clinic.patient.chat_user, "/connect", "apple")

    assert "Apple Health" in text_of(listing)
    assert reply["response_type"] == "ephemeral" and "Export All Health Data" in text_of(reply)
    urls = [e["url"] for b in reply["blocks"] if b["type"] == "actions" for e in b["elements"] if "url" in e]
    assert len(urls) == 1 and urls[0].startswith(f"{PUBLIC_URL}/connect/apple?token=")
    token = parse_qs(urlsplit(urls[0]).query)["token"][0]

    data = FormData()
    data.add_field("export", export_zip(export_xml()), filename="export.zip", content_type="application/zip")
    page = await client.post("/connect/apple", params={"token": token}, data=data)
    assert page.status == 200
    owner = await pool.fetchval(
        "SELECT user_id FROM connections WHERE provider = 'apple_health' AND user_id = $1", clinic.patient.user_id
    )
    assert owner == clinic.patient.user_id
