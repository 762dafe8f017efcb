"""The PostgreSQL a bench runs on: the URL it was given, or an embedded server for the run."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from db.embedded import EmbeddedServices


@contextlib.contextmanager
def postgres(url: str | None) -> Iterator[str]:
    """Yields an admin URL: ``url``, else CAREBEACON_BENCH_DATABASE_URL, else an embedded server
    in a temporary directory, stopped and removed on exit."""
    url = url or os.environ.get("CAREBEACON_BENCH_DATABASE_URL")
    if url:
        yield url
        return
    with tempfile.TemporaryDirectory(prefix="cb-bench-") as scratch:
        # As root the embedded server runs as another user, who must be able to enter the folder.
        Path(scratch).chmod(0o755)
        embedded = EmbeddedServices(Path(scratch)).start(redis=False)
        try:
            yield embedded.database_url
        finally:
            embedded.close()
