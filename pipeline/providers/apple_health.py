"""Apple Health: the ``export.zip`` a person makes on the iPhone (Health → profile picture →
Export All Health Data), uploaded through ``/connect apple`` (bot/web/apple_health.py) and read
by an ``import`` run.

The zip holds ``apple_health_export/export.xml``, which runs to gigabytes, so it is never
unpacked or loaded: the member is decompressed as a stream and fed to the parser
(``apple_export.ExportReader``) 1 MiB at a time, in a thread, and only each chunk's readings
are held.  What each record becomes is in ``apple_export``.
"""

from __future__ import annotations

import asyncio
import re
import zipfile
import zlib
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from db import env as envlib
from db.metrics import Reading
from db.sessions import Session
from pipeline.errors import PermanentSyncError
from pipeline.providers.apple_export import DAILY, QUANTITIES, ExportReader
from pipeline.providers.base import Capabilities, Provider, Window

MEMBER = "apple_health_export/export.xml"
CHUNK = 1 << 20
# The name of an export in ``connections.settings`` (see bot/web/apple_health.py).
EXPORT_KEY = "export"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}\.zip$")


def export_member(archive: zipfile.ZipFile) -> str:
    """The export.xml inside: Apple's path, or an export.xml at the top of a re-zipped folder."""
    names = archive.namelist()
    if MEMBER in names:
        return MEMBER
    for name in names:
        if name.rsplit("/", 1)[-1] == "export.xml" and name.count("/") <= 1:
            return name
    raise PermanentSyncError("apple_health: the zip holds no export.xml; upload the export.zip from the Health app")


class ExportFile:
    """An export.zip opened for reading: ``next_chunk`` parses the next 1 MiB of export.xml and
    returns its readings; None once the file is done.  Blocking: call it in a thread."""

    def __init__(self, path: Path, window: Window) -> None:
        self.reader = ExportReader(window)
        self._archive: zipfile.ZipFile | None = None
        self._xml: IO[bytes] | None = None
        self._finished = False
        try:
            self._archive = zipfile.ZipFile(path)
        except FileNotFoundError:
            raise PermanentSyncError("apple_health: the uploaded export is gone; upload it again") from None
        except zipfile.BadZipFile:
            raise PermanentSyncError("apple_health: the upload is not a zip file") from None
        try:
            self._xml = self._archive.open(export_member(self._archive))
        except PermanentSyncError:
            self._archive.close()
            raise

    def next_chunk(self) -> list[Reading | Session] | None:
        if self._finished or self._xml is None:
            return None
        try:
            chunk = self._xml.read(CHUNK)
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise PermanentSyncError(f"apple_health: the zip is damaged ({exc}); earlier readings were kept") from None
        if chunk:
            return self.reader.feed(chunk)
        self._finished = True
        return self.reader.feed(b"", final=True) + list(self.reader.finish())

    def close(self) -> None:
        for handle in (self._xml, self._archive):
            if handle is not None:
                handle.close()


class AppleHealth(Provider):
    id = "apple_health"
    display_name = "Apple Health"
    # Nothing to pull: the sweeps skip it, and each run reads the latest upload.
    capabilities = Capabilities(rest_pull=False, webhook_push=False, refresh_tokens=False, max_history_days=None)
    metrics = frozenset(QUANTITIES.values()) | frozenset(DAILY.values()) | {"sleep_duration", "sleep_deep", "sleep_rem"}

    def __init__(self, upload_dir: Path) -> None:
        self.upload_dir = upload_dir

    @classmethod
    def from_env(cls, env: envlib.Env) -> AppleHealth:
        """Uploads go in APPLE_HEALTH_UPLOAD_DIR, by default ``uploads/apple_health`` in
        CAREBEACON_DATA_DIR (default ``.carebeacon``).  The web process writes there and the
        sync workers read: on several machines, a shared volume."""
        data_dir = Path(envlib.text(env, "CAREBEACON_DATA_DIR", ".carebeacon") or ".carebeacon")
        found = envlib.text(env, "APPLE_HEALTH_UPLOAD_DIR")
        return cls((Path(found) if found else data_dir / "uploads" / "apple_health").absolute())

    def export_path(self, name: str) -> Path:
        """Where the export called ``name`` lives.  Raises PermanentSyncError for a name that is
        not one of ours (it could point outside the upload directory)."""
        if not _SAFE_NAME.match(name):
            raise PermanentSyncError("apple_health: the connection names no valid export")
        return self.upload_dir / name

    def unclaimed(self, named: set[str], before: datetime) -> list[Path]:
        """Files in the upload directory last written before ``before`` that no connection
        reads: exports of revoked or deleted connections, uploads that never finished.  A file
        written since may be an upload still arriving, or one a moment from being recorded."""
        if not self.upload_dir.is_dir():
            return []
        return sorted(
            path
            for path in self.upload_dir.iterdir()
            if path.is_file() and path.name not in named and path.stat().st_mtime < before.timestamp()
        )

    async def fetch(
        self, tokens: dict[str, Any], window: Window, settings: dict[str, Any]
    ) -> AsyncIterator[Reading | Session]:
        """The readings of the connection's latest upload inside ``window``; nothing when none
        was uploaded.  The parse runs in a thread, a chunk at a time: the workers' event loop
        serves every other actor meanwhile."""
        name = settings.get(EXPORT_KEY)
        if name is None:
            return
        export = await asyncio.to_thread(ExportFile, self.export_path(str(name)), window)
        try:
            while (items := await asyncio.to_thread(export.next_chunk)) is not None:
                for item in items:
                    yield item
        finally:
            export.close()
