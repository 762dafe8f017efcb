"""What a bench runs on: PostgreSQL and Redis (the URLs it was given, or embedded servers for the
run), a fresh database, and the Procfile's ``dramatiq pipeline.worker`` processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import redis

from db.embedded import EmbeddedServices
from db.migrate import migrate

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


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


@contextlib.contextmanager
def redis_server(url: str | None, scratch: Path) -> Iterator[str]:
    """Yields a Redis URL: ``url``, else CAREBEACON_BENCH_REDIS_URL, else an embedded server
    under ``scratch``, stopped on exit."""
    url = url or os.environ.get("CAREBEACON_BENCH_REDIS_URL")
    if url:
        yield url
        return
    embedded = EmbeddedServices(scratch / "redis").start(postgres=False, redis=True)
    try:
        yield embedded.redis_url
    finally:
        embedded.close()


def clear_queues(url: str) -> None:
    """Delete the ``dramatiq:*`` keys: a bench's Redis database is its own."""
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter("dramatiq:*"))
    if keys:
        client.delete(*keys)
    client.close()


async def create_database(admin_url: str) -> str:
    """A fresh ``cb_bench_<hex>`` database with the schema; its URL."""
    name = f"cb_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    url = urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return url


async def drop_database(admin_url: str, url: str) -> None:
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {urlsplit(url).path.lstrip('/')} WITH (FORCE)")
    finally:
        await admin.close()


def bench_env(database_url: str, redis_url: str, seal_keys: str, scratch: Path) -> dict[str, str]:
    """The environment of the processes a bench starts: this one's, less any CareBeacon, database,
    Redis or logging setting of the machine, plus the bench's own."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("CAREBEACON_", "DATABASE_", "REDIS_", "LOG_"))}
    kept.pop("METRICS_PORT", None)  # a bench's processes must not take the ports a deployment uses
    return kept | {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "CAREBEACON_SEAL_KEYS": seal_keys,
        "CAREBEACON_DATA_DIR": str(scratch / "data"),
    }


# -- workers: the Procfile's dramatiq lines -------------------------------------------------------


@dataclass(frozen=True)
class ProcessType:
    name: str
    args: list[str]  # after ``dramatiq pipeline.worker``

    @property
    def threads(self) -> str:
        return self.args[self.args.index("--threads") + 1] if "--threads" in self.args else "?"

    @property
    def processes(self) -> int:
        return int(self.args[self.args.index("--processes") + 1]) if "--processes" in self.args else os.cpu_count() or 1


def procfile_workers(names: tuple[str, ...] = (), path: Path = ROOT / "Procfile") -> list[ProcessType]:
    """Every ``dramatiq pipeline.worker`` line of the Procfile (only those of ``names``, in the
    Procfile's order, when given), its leading VAR=value assignments (METRICS_PORT) dropped: the
    bench's processes must not take the ports a deployment uses."""
    found = []
    for line in path.read_text().splitlines():
        match = re.match(r"^([\w-]+):\s*(.+)$", line)
        if not match or (names and match.group(1) not in names):
            continue
        words = shlex.split(match.group(2))
        while words and re.match(r"^\w+=", words[0]):
            words.pop(0)
        if words[:2] == ["dramatiq", "pipeline.worker"]:
            found.append(ProcessType(match.group(1), words[2:]))
    if not found or (names and len(found) != len(names)):
        raise SystemExit(f"no 'dramatiq pipeline.worker' line for {names or 'any process type'} in {path}")
    return found


class Workers:
    """One ``dramatiq pipeline.worker [modules] …`` per process type, each in a session of its own
    (so it can be stopped, and its CPU read, by process group), logging to ``logdir``."""

    def __init__(
        self, types: list[ProcessType], env: dict[str, str], logdir: Path, *, modules: tuple[str, ...] = (),
        nice: int = 0,
    ) -> None:  # fmt: skip
        logdir.mkdir(parents=True, exist_ok=True)
        self.types, self.logs, self.popens = types, [], []
        for t in types:
            log = logdir / f"worker-{t.name}.log"
            command = ["nice", "-n", str(nice)] if nice else []
            command += [str(BIN / "dramatiq"), "pipeline.worker", *modules, *t.args]
            with log.open("w") as sink:
                self.popens.append(
                    subprocess.Popen(
                        command, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
                    )
                )
            self.logs.append(log)

    async def ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        for t, popen, log in zip(self.types, self.popens, self.logs, strict=True):
            while log.read_text(errors="replace").count("ready for action") < t.processes:
                if popen.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{t.name} workers did not start:\n{log.read_text(errors='replace')[-3000:]}")
                await asyncio.sleep(0.1)

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of each process type (every process of its group)."""
        ticks = os.sysconf("SC_CLK_TCK")
        spent = dict.fromkeys((t.name for t in self.types), 0.0)
        groups = {p.pid: t.name for t, p in zip(self.types, self.popens, strict=True)}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            name = groups.get(int(fields[2]))  # the process group
            if name is not None:
                spent[name] += (int(fields[11]) + int(fields[12])) / ticks
        return spent

    def tails(self, chars: int = 2000) -> str:
        """The end of each log, for a bench that failed, before its scratch directory goes."""
        return "\n".join(f"# {log.name}:\n{log.read_text(errors='replace')[-chars:]}" for log in self.logs)

    def stop(self) -> None:
        for popen in self.popens:
            if popen.poll() is None:
                os.killpg(popen.pid, signal.SIGTERM)
        for popen in self.popens:
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(30)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGKILL)
            popen.wait(10)


# -- what the machine is doing -------------------------------------------------------------------


def process_cpu(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far, or None off Linux."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies over all cores, or None off Linux."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def log_errors(path: Path) -> tuple[int, str]:
    """How many ERROR (or worse) lines a process logged, and the kinds of them: the message and
    the exception's last line of each JSON line (the benches set LOG_FORMAT=json)."""
    if not path.exists():
        return 0, ""
    found = [line for line in path.read_text(errors="replace").splitlines() if re.search(r"ERROR|CRITICAL|Trace", line)]
    kinds: dict[str, int] = {}
    for line in found:
        try:
            entry = json.loads(line)
            kind = f"{entry.get('message')}: {(entry.get('exception') or '').strip().splitlines()[-1:]}"
        except (ValueError, AttributeError):
            kind = line[:200]
        kinds[kind] = kinds.get(kind, 0) + 1
    return len(found), "; ".join(f"{n} × {k}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1])[:3])
