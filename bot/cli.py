"""The ``carebeacon`` command.

up       migrate, seed an empty database, run web + workers + scheduler (Ctrl-C stops)
web      run the web app alone (the Procfile's web process)
demo     run sync → score → alert → delivery once, print a summary, exit
migrate  apply pending SQL migrations
doctor   check configuration and reach Postgres and Redis
reseal   re-encrypt every sealed secret under the first key of CAREBEACON_SEAL_KEYS
sealkey  print a new key entry for CAREBEACON_SEAL_KEYS
clock    run the scheduler alone (the Procfile's clock process)
deadletters  list sync runs that failed for good
requeue  hand failed sync runs back to the queue
apikey   create an API key for a tenant (printed once, on the last line)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from db import SettingError, sync_runs
from db.migrate import MigrationError
from db.sealing import Keyring, SealError
from pipeline import runtime
from pipeline.logs import configure_logging


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="carebeacon", description="Wearable health data: sync, analyse, alert.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up = sub.add_parser("up", help="run everything: web app, workers, scheduler")
    up.add_argument("--host", help="address to listen on (default HOST or 127.0.0.1)")
    up.add_argument("--port", type=int, help="port to listen on (default PORT or 8080)")
    web = sub.add_parser("web", help="run the web app alone")
    web.add_argument("--host", help="address to listen on (default HOST or 127.0.0.1)")
    web.add_argument("--port", type=int, help="port to listen on (default PORT or 8080)")
    sub.add_parser("demo", help="run the whole flow once and print a summary")
    sub.add_parser("migrate", help="apply pending database migrations")
    sub.add_parser("doctor", help="check configuration and connectivity")
    sub.add_parser("reseal", help="re-encrypt sealed secrets under the current key")
    sealkey = sub.add_parser("sealkey", help="print a new CAREBEACON_SEAL_KEYS entry")
    sealkey.add_argument("--id", default=datetime.now(UTC).strftime("k%Y%m%d"), help="key id (default kYYYYMMDD)")
    sub.add_parser("clock", help="run the scheduled jobs (a second clock for failover is safe)")
    deadletters = sub.add_parser("deadletters", help="list sync runs that failed for good, newest first")
    deadletters.add_argument("--limit", type=int, default=50, help="how many to list (default 50)")
    requeue = sub.add_parser("requeue", help="hand failed sync runs back to the queue")
    which = requeue.add_mutually_exclusive_group(required=True)
    which.add_argument("run_ids", nargs="*", type=int, default=[], metavar="RUN_ID", help="sync run ids")
    which.add_argument("--all", action="store_true", help="every failed run")
    apikey = sub.add_parser("apikey", help="manage API keys")
    apikey_sub = apikey.add_subparsers(dest="apikey_command", required=True, metavar="ACTION")
    create_key = apikey_sub.add_parser("create", help="create a key; the tenant is created if new")
    create_key.add_argument("--tenant", required=True, help="tenant slug")
    create_key.add_argument("--scopes", default="read", help="comma-separated: read, write, admin (default read)")
    create_key.add_argument("--name", default="cli", help="a name to recognise the key by (default cli)")
    create_key.add_argument("--expires-days", type=int, help="days until the key expires (default never)")
    analyze = sub.add_parser("analyze", help="analyse a CSV of readings and print JSON")
    analyze.add_argument("--input", required=True, type=Path, help="CSV with metric,recorded_at,value[,unit]")
    analyze.add_argument("--age", type=int, help="the patient's age in years (some score targets depend on it)")
    analyze.add_argument("--timezone", default="UTC", help="IANA zone of the local days (default UTC)")
    analyze.add_argument("--min-pairs", type=int, default=14, help="fewest paired days for a correlation (default 14)")
    analyze.add_argument("--json", action="store_true", help="print JSON (the only output format)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    env = os.environ
    try:
        configure_logging(env)
        if args.command == "sealkey":
            print(Keyring.new_entry(args.id))
            return 0
        if args.command == "analyze":
            from bot.analyze import run

            if args.min_pairs < 4:
                print("carebeacon analyze: --min-pairs must be at least 4", file=sys.stderr)
                return 2
            return run(args.input, args.timezone, args.age, args.min_pairs)
        if args.command == "doctor":
            from bot.doctor import diagnose, report

            checks = diagnose(env)
            print(report(checks))
            return 0 if all(c.ok for c in checks) else 1
        return _with_runtime(env, COMMANDS[args.command], args)
    except SettingError as exc:
        print(f"carebeacon: configuration error: {exc}", file=sys.stderr)
        return 2
    except (MigrationError, SealError) as exc:
        print(f"carebeacon: {exc}", file=sys.stderr)
        return 1


def _with_runtime(env: os._Environ[str], command: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    rt = runtime.start(env)
    try:
        for note in rt.services.notes:
            print(f"note: {note}", file=sys.stderr)
        return command(args)
    except KeyboardInterrupt:
        return 130
    finally:
        runtime.stop()


def _up(args: argparse.Namespace) -> int:
    from bot.settings import BotSettings
    from bot.up import serve

    asyncio.run(serve(BotSettings.from_env(os.environ, host=args.host, port=args.port)))
    return 0


def _web(args: argparse.Namespace) -> int:
    from bot.settings import BotSettings
    from bot.up import serve_web

    asyncio.run(serve_web(BotSettings.from_env(os.environ, host=args.host, port=args.port)))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from bot.demo import DemoFailed, run_demo

    try:
        summary = asyncio.run(run_demo())
    except DemoFailed as exc:
        print(f"carebeacon demo: {exc}", file=sys.stderr)
        return 1
    print(summary.render())
    return 0


def _migrate(args: argparse.Namespace) -> int:
    async def go() -> list[str]:
        pool = await runtime.pool()
        try:
            async with pool.acquire() as conn:
                from db.migrate import migrate

                return await migrate(conn)
        finally:
            await runtime.close_pool()

    applied = asyncio.run(go())
    print(f"applied: {', '.join(applied)}" if applied else "migrations: up to date")
    return 0


def _reseal(args: argparse.Namespace) -> int:
    async def go() -> dict[str, int]:
        pool = await runtime.pool()
        try:
            async with pool.acquire() as conn:
                from db.reseal import reseal

                return await reseal(conn, runtime.current().keyring)
        finally:
            await runtime.close_pool()

    counts = asyncio.run(go())
    for column, count in counts.items():
        print(f"{column}: {count} resealed under {runtime.current().keyring.current_kid!r}")
    return 0


def _clock(args: argparse.Namespace) -> int:
    async def go() -> None:
        from pipeline.jobs import schedule
        from pipeline.scheduler import Clock

        pool = await runtime.pool()
        try:
            jobs = schedule(pool, runtime.current().settings)
            print(f"clock running: {', '.join(job.name for job in jobs)}", flush=True)
            await Clock(pool, jobs).run()
        finally:
            await runtime.close_pool()

    asyncio.run(go())
    return 0


def _deadletters(args: argparse.Namespace) -> int:
    async def go() -> list[Any]:
        pool = await runtime.pool()
        try:
            async with pool.acquire() as conn:
                return await sync_runs.failed(conn, args.limit)
        finally:
            await runtime.close_pool()

    runs = asyncio.run(go())
    for run in runs:
        when = run["finished_at"].isoformat(timespec="seconds") if run["finished_at"] else "-"
        print(
            f"run {run['id']}  connection {run['connection_id']} ({run['provider']}, user {run['user_id']})"
            f"  {run['trigger']}  {run['attempts']} attempt(s)  {when}  {run['error'] or ''}"
        )
    print(f"{len(runs)} failed sync run(s)" + ("; requeue with: carebeacon requeue RUN_ID... | --all" if runs else ""))
    return 0


def _requeue(args: argparse.Namespace) -> int:
    async def go() -> list[int]:
        from pipeline import actors  # noqa: F401  (declares the actors the requeue sends to)
        from pipeline.triggers import requeue_failed

        pool = await runtime.pool()
        try:
            return await requeue_failed(pool, None if args.all else args.run_ids)
        finally:
            await runtime.close_pool()

    requeued = asyncio.run(go())
    missed = sorted(set(args.run_ids) - set(requeued))
    print(f"requeued {len(requeued)} sync run(s)" + (f": {', '.join(map(str, requeued))}" if requeued else ""))
    if missed:
        print(f"not failed (or unknown), left alone: {', '.join(map(str, missed))}", file=sys.stderr)
        return 1
    return 0


def _apikey(args: argparse.Namespace) -> int:
    from db import api_keys, tenants

    scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
    if not scopes or not set(scopes) <= set(api_keys.SCOPES):
        print(f"carebeacon apikey: --scopes takes {', '.join(api_keys.SCOPES)}", file=sys.stderr)
        return 2
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", args.tenant):
        print("carebeacon apikey: --tenant is a slug: lowercase letters, digits and dashes", file=sys.stderr)
        return 2
    if args.expires_days is not None and args.expires_days < 1:
        print("carebeacon apikey: --expires-days must be at least 1", file=sys.stderr)
        return 2

    async def go() -> str:
        pool = await runtime.pool()
        try:
            async with pool.acquire() as conn, conn.transaction():
                tenant_id = await tenants.ensure_tenant(conn, args.tenant, args.tenant)
                expires = datetime.now(UTC) + timedelta(days=args.expires_days) if args.expires_days else None
                key, plain = await api_keys.create(conn, tenant_id, args.name, scopes, expires)
        finally:
            await runtime.close_pool()
        print(f"API key {key.prefix} for tenant {args.tenant!r}, scopes {', '.join(key.scopes)}; shown once:")
        return plain

    print(asyncio.run(go()))
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "apikey": _apikey,
    "deadletters": _deadletters,
    "requeue": _requeue,
    "up": _up,
    "web": _web,
    "demo": _demo,
    "migrate": _migrate,
    "reseal": _reseal,
    "clock": _clock,
}

if __name__ == "__main__":
    sys.exit(main())
