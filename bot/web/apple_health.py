"""The Apple Health upload page: ``/connect apple`` hands out a one-time link to it.

1. ``GET /connect/apple?token=…`` checks the link (without spending it: a chat preview may
   fetch it) and shows a form for the ``export.zip``.
2. ``POST /connect/apple?token=…`` spends the link, streams the file part to disk in the
   upload directory (1 MiB at a time, never whole into memory), checks it is a zip holding an
   export.xml, points the user's ``apple_health`` connection at it and starts an ``import`` run.

Refusals: a link unknown, used, expired or not for Apple Health 400; a body over
``APPLE_HEALTH_MAX_UPLOAD_MB`` 413 (declared, or counted while streaming); not multipart, no
file, not a zip, or no export.xml inside 400.  The link is spent when the upload starts, so a
failed upload needs a new link, and two tabs cannot both upload with one.
"""

from __future__ import annotations

import asyncio
import html
import logging
import os
import secrets
import zipfile
from pathlib import Path

from aiohttp import BodyPartReader, web

from bot.api.context import keyring
from bot.state import pool
from bot.web import pages
from bot.web.provider_hooks import WEB_SETTINGS
from db import connect_links, exports
from pipeline import triggers
from pipeline.errors import PermanentSyncError
from pipeline.providers import PROVIDERS
from pipeline.providers.apple_health import AppleHealth, export_member

log = logging.getLogger(__name__)

PATH = "/connect/apple"
# The page a connect link opens, for providers connected by uploading a file, not by signing in.
UPLOAD_PAGES = {AppleHealth.id: PATH}
FIELD = "export"
CHUNK = 1 << 20
ZIP_MAGIC = b"PK\x03\x04"
# The multipart framing around the file: a declared length may exceed the limit by this much.
FRAMING = 64 * 1024
# The form posts to this page itself: the shared headers forbid any form action.
HEADERS = pages.HEADERS | {"Content-Security-Policy": pages.HEADERS["Content-Security-Policy"].replace(
    "form-action 'none'", "form-action 'self'")}  # fmt: skip

FORM = """<p>On your iPhone, open Health, tap your picture, then <b>Export All Health Data</b>.
Choose the <b>export.zip</b> it makes here. The upload can take a few minutes.</p>
<form method="post" action="{action}" enctype="multipart/form-data">
<p><input type="file" name="export" accept=".zip,application/zip" required></p>
<p><button type="submit">Upload</button></p>
</form>
<p class="detail">This page works once. Do not share it.</p>"""


def _provider() -> AppleHealth:
    found = PROVIDERS["apple_health"]
    assert isinstance(found, AppleHealth)
    return found


def _token(request: web.Request) -> str | None:
    token = request.query.get("token", "")
    return token if token and len(token) <= 200 else None


async def upload_form(request: web.Request) -> web.Response:
    token = _token(request)
    async with pool(request).acquire() as conn:
        link = await connect_links.peek(conn, token) if token else None
    if link is None or link.provider != AppleHealth.id:
        return pages.link_invalid()
    action = html.escape(f"{PATH}?token={token}")
    body = FORM.format(action=action)
    text = pages.TEMPLATE.substitute(title="Import your Apple Health data", body=body)
    return web.Response(text=text, content_type="text/html", charset="utf-8", headers=HEADERS)


def refused(title: str, reason: str, status: int) -> web.Response:
    return pages.page(title, reason, pages.ASK_AGAIN, status=status)


def too_large(limit: int) -> web.Response:
    return refused("The file is too large", f"This server takes exports of up to {limit // 1024**2} MB.", 413)


async def upload(request: web.Request) -> web.Response:
    token = _token(request)
    limit = request.app[WEB_SETTINGS].apple_health_max_upload_bytes
    if token is None:
        return pages.link_invalid()
    async with pool(request).acquire() as conn:
        link = await connect_links.consume(conn, token)
    if link is None or link.provider != AppleHealth.id:
        return pages.link_invalid()
    if (request.content_length or 0) > limit + FRAMING:
        return too_large(limit)
    if request.content_type != "multipart/form-data":
        return refused("No file arrived", "Choose the export.zip on the upload page.", 400)
    provider = _provider()
    provider.upload_dir.mkdir(parents=True, exist_ok=True)
    partial = provider.upload_dir / f".{secrets.token_hex(16)}.part"
    try:
        outcome = await _receive(request, partial, limit)
        if outcome is not None:
            return outcome
        try:
            await asyncio.to_thread(_check, partial)
        except PermanentSyncError:
            return refused("This is not an Apple Health export", "The zip holds no export.xml.", 400)
        except zipfile.BadZipFile:
            return refused("This is not an Apple Health export", "The file is not a zip.", 400)
        size = partial.stat().st_size
        name = f"{secrets.token_hex(16)}.zip"
        os.replace(partial, provider.export_path(name))
    finally:
        partial.unlink(missing_ok=True)
    async with pool(request).acquire() as conn:
        connection_id, previous = await exports.record(
            conn, keyring(request), user_id=link.user_id, provider=AppleHealth.id, name=name, size=size
        )
    if previous and previous != name:
        # A running import of the old file keeps reading it: an open file outlives its name.
        provider.export_path(previous).unlink(missing_ok=True)
    run_id = await triggers.request_sync(pool(request), connection_id, "import")
    log.info("apple health export of user %s: %d bytes, import run %s", link.user_id, size, run_id)
    return pages.page(
        "Your Apple Health data is on its way",
        "CareBeacon is importing your export now; your recent data appears within a few minutes.",
        "You can close this page.",
    )


async def _receive(request: web.Request, path: Path, limit: int) -> web.Response | None:
    """Stream the form's file part into ``path``; a refusal (413 over ``limit``, 400 for
    anything but a zip in the ``export`` field) or None when the file is on disk."""
    reader = await request.multipart()
    part = await reader.next()
    if not isinstance(part, BodyPartReader) or part.name != FIELD or not part.filename:
        return refused("No file arrived", "Choose the export.zip on the upload page.", 400)
    size = 0
    head = b""
    with path.open("wb") as out:
        while chunk := await part.read_chunk(CHUNK):
            size += len(chunk)
            if size > limit:
                return too_large(limit)
            if len(head) < len(ZIP_MAGIC):
                head += chunk[: len(ZIP_MAGIC)]
                if len(head) >= len(ZIP_MAGIC) and not head.startswith(ZIP_MAGIC):
                    return refused("This is not an Apple Health export", "The file is not a zip.", 400)
            # A write of 1 MiB to the page cache takes well under a millisecond: not worth a thread.
            out.write(chunk)
    if size < len(ZIP_MAGIC):
        return refused("This is not an Apple Health export", "The file is not a zip.", 400)
    return None


def _check(path: Path) -> None:
    """Raises BadZipFile unless ``path`` is a zip, PermanentSyncError unless it holds an export.xml."""
    with zipfile.ZipFile(path) as archive:
        export_member(archive)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get(PATH, upload_form)
    router.add_post(PATH, upload)
