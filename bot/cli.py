"""The ``carebeacon`` command.

up       migrate, seed an empty database, run web + workers + scheduler (Ctrl-C stops)
web      run the web app alone (the Procfile's web process)
demo     run sync → score → alert → delivery once, print a summary, exit
migrate  apply pending SQL migrations
doctor   check configuration and reach Postgres and Redis
providers  list every wearable provider: configured here, or what it needs
reseal   re-encrypt every sealed secret under the first key of CAREBEACON_SEAL_KEYS
sealkey  print a new key entry for CAREBEACON_SEAL_KEYS
clock    run the scheduler alone (the Procfile's clock process)
deadletters  list sync runs that failed for good
requeue  hand failed sync runs back to the queue
channels test  send a test message through a channel and print the outcome
apikey   create an API key for a tenant (printed once, on the last line)
webhooks verify  check a captured webhook request's Standard Webhooks signature
report   render a user's weekly health report to an HTML file
discord-register  register the chat commands with Discord (one guild, or global)
discord-gateway   serve Discord interactions over the gateway (no public URL needed)
chat bind-workspace  bind a Slack workspace or Discord guild to a tenant
chat enrol  print an enrolment code for a user to link a chat account
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
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
    sub.add_parser("providers", help="list the wearable providers: configured, or what each needs")
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
    hooks = sub.add_parser("webhooks", help="integrator webhooks")
    hooks_sub = hooks.add_subparsers(dest="webhooks_command", required=True, metavar="ACTION")
    verify = hooks_sub.add_parser("verify", help="check a captured request's signature; prints valid or invalid")
    verify.add_argument("--secret", required=True, help="the endpoint's whsec_ secret")
    verify.add_argument("--id", required=True, help="the webhook-id header")
    verify.add_argument("--timestamp", required=True, help="the webhook-timestamp header")
    verify.add_argument("--signature", required=True, help="the webhook-signature header")
    verify.add_argument("--body-file", required=True, type=Path, help="the exact body bytes received")
    verify.add_argument("--ignore-age", action="store_true", help="accept a timestamp older than 5 minutes")
    channels = sub.add_parser("channels", help="notification channels")
    channels_sub = channels.add_subparsers(dest="channels_command", required=True, metavar="ACTION")
    channel_test = channels_sub.add_parser("test", help="send a test message through a channel; print the outcome")
    channel_test.add_argument("channel_id", type=int, metavar="CHANNEL_ID", help="the channel's id")
    report = sub.add_parser("report", help="render a user's weekly health report to an HTML file")
    report.add_argument("user_id", type=int, metavar="USER_ID", help="the patient's user id")
    report.add_argument("--out", required=True, type=Path, help="the HTML file to write (charts embedded)")
    report.add_argument("--end", type=date.fromisoformat, help="last day (YYYY-MM-DD); default the newest report")
    report.add_argument("--patient", action="store_true", help="the patient's copy rather than the care team's")
    register = sub.add_parser("discord-register", help="register the chat commands with Discord (bulk overwrite)")
    register.add_argument("--guild", help="a guild (server) id: its commands update at once (default: global)")
    sub.add_parser("discord-gateway", help="serve Discord interactions over the gateway (no public URL needed)")
    chat_cmd = sub.add_parser("chat", help="chat front ends: tenancy and account linking")
    chat_sub = chat_cmd.add_subparsers(dest="chat_command", required=True, metavar="ACTION")
    bind = chat_sub.add_parser("bind-workspace", help="bind a Slack workspace or Discord guild to a tenant")
    bind.add_argument("--platform", required=True, choices=("slack", "discord"))
    bind.add_argument("--workspace", required=True, help="Slack team/enterprise id, or Discord guild id")
    bind.add_argument("--tenant", required=True, help="tenant slug (it must exist)")
    bind.add_argument("--name", default="", help="a name to recognise the workspace by")
    enrol = chat_sub.add_parser("enrol", help="print an enrolment code the linking page asks for (7 days, once)")
    enrol.add_argument("--tenant", required=True, help="tenant slug")
    enrol.add_argument("--user-id", required=True, type=int, help="the CareBeacon user's id")
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
        if args.command == "webhooks":
            return _webhooks_verify(args)
        if args.command == "discord-register":
            return _discord_register(args)
        if args.command == "analyze":
            from bot.analyze import run

            if args.min_pairs < 4:
                print("carebeacon analyze: --min-pairs must be at least 4", file=sys.stderr)
                return 2
            return run(args.input, args.timezone, args.age, args.min_pairs)
        if args.command == "providers":
            from bot.doctor import providers_report

            print(providers_report(env))
            return 0
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


def _webhooks_verify(args: argparse.Namespace) -> int:
    """Print valid (exit 0) or invalid (exit 1) for a captured request; 2 for a bad secret or file."""
    from channels.signing import SecretError, verify

    try:
        body = args.body_file.read_bytes()
        now = float(args.timestamp) if args.ignore_age and args.timestamp.isdigit() else None
        valid = verify(args.secret, args.id, args.timestamp, body, args.signature, now=now)
    except (OSError, SecretError) as exc:
        print(f"carebeacon webhooks verify: {exc}", file=sys.stderr)
        return 2
    print("valid" if valid else "invalid")
    return 0 if valid else 1


def _channels(args: argparse.Namespace) -> int:
    """``channels test``: exit 0 when the peer accepted the message, 1 otherwise."""

    async def go() -> Any:
        from channels.routing import send_test_message

        pool = await runtime.pool()
        try:
            keys = await runtime.deployment_keys()
            return await send_test_message(pool, runtime.current().keyring, args.channel_id, keys)
        finally:
            await runtime.close_pool()

    found = asyncio.run(go())
    if found is None:
        print(f"carebeacon channels test: no channel {args.channel_id}", file=sys.stderr)
        return 1
    channel, delivery = found
    status = f" (HTTP {delivery.http_status})" if delivery.http_status is not None else ""
    detail = f": {delivery.detail}" if delivery.detail else ""
    state = "" if channel.enabled else f" [disabled: {channel.disabled_reason}]"
    print(f"channel {channel.id} ({channel.kind} {channel.label!r}){state}: {delivery.status.value}{status}{detail}")
    return 0 if delivery.status.value == "delivered" else 1


def _report(args: argparse.Namespace) -> int:
    """``report USER_ID --out FILE``: the stored report, or a preview when there is none yet."""

    async def go() -> Any:
        from pipeline.reports import load_for_user, render

        pool = await runtime.pool()
        try:
            async with pool.acquire() as conn:
                data = await load_for_user(conn, args.user_id, args.end)
        finally:
            await runtime.close_pool()
        return data and render(data, audience="patient" if args.patient else "care_team", images="data")

    rendered = asyncio.run(go())
    if rendered is None:
        print(f"carebeacon report: no user {args.user_id}", file=sys.stderr)
        return 1
    args.out.write_text(rendered.html, encoding="utf-8")
    print(f"wrote {args.out} ({len(rendered.images)} chart(s)): {rendered.subject}")
    return 0


def _discord_register(args: argparse.Namespace) -> int:
    """Bulk-overwrite the application's commands with the core's; needs no database."""
    from bot.commands import COMMANDS as CHAT_COMMANDS
    from bot.discord import DiscordRest, DiscordSettings, application_commands
    from bot.discord.rest import DiscordApiError

    settings = DiscordSettings.from_env(os.environ)
    if settings.application_id is None or settings.bot_token is None:
        print("carebeacon discord-register: set DISCORD_APPLICATION_ID and DISCORD_BOT_TOKEN", file=sys.stderr)
        return 2

    async def go() -> list[dict[str, Any]]:
        rest = DiscordRest(settings)
        try:
            return await rest.overwrite_commands(application_commands(CHAT_COMMANDS.values()), args.guild)
        finally:
            await rest.close()

    try:
        registered = asyncio.run(go())
    except DiscordApiError as exc:
        print(f"carebeacon discord-register: {exc}", file=sys.stderr)
        return 1
    where = f"guild {args.guild}" if args.guild else "global (may take a while to appear)"
    print(f"registered {len(registered)} command(s), {where}: {', '.join('/' + c['name'] for c in registered)}")
    return 0


def _discord_gateway(args: argparse.Namespace) -> int:
    from bot.discord import DiscordRest, DiscordSettings, Interactions
    from bot.discord.gateway import Gateway
    from bot.settings import BotSettings

    settings = DiscordSettings.from_env(os.environ)
    if settings.bot_token is None or settings.application_id is None:
        print("carebeacon discord-gateway: set DISCORD_APPLICATION_ID and DISCORD_BOT_TOKEN", file=sys.stderr)
        return 2

    async def go() -> None:
        pool = await runtime.pool()
        rest = DiscordRest(settings)
        public_url = BotSettings.from_env(os.environ).public_url
        client = Gateway(Interactions(pool, runtime.current().keyring, public_url, rest), rest)
        try:
            assert settings.bot_token is not None
            await client.start(settings.bot_token)
        finally:
            if not client.is_closed():
                await client.close()
            await runtime.close_pool()

    asyncio.run(go())
    return 0


def _chat(args: argparse.Namespace) -> int:
    """``chat bind-workspace`` / ``chat enrol``: exit 1 for an unknown tenant or user, or a workspace
    bound to another tenant."""
    from db import chat

    async def go() -> str:
        pool = await runtime.pool()
        try:
            async with pool.acquire() as conn, conn.transaction():
                tenant_id = await conn.fetchval("SELECT id FROM tenants WHERE slug = $1", args.tenant)
                if tenant_id is None:
                    raise ValueError(f"no tenant {args.tenant!r}")
                if args.chat_command == "bind-workspace":
                    await chat.bind_workspace(conn, args.platform, args.workspace, tenant_id, args.name)
                    return f"{args.platform} workspace {args.workspace} is bound to tenant {args.tenant!r}"
                return await chat.create_enrolment_code(conn, tenant_id, args.user_id, "cli")
        finally:
            await runtime.close_pool()

    try:
        print(asyncio.run(go()))
    except ValueError as exc:
        print(f"carebeacon chat {args.chat_command}: {exc}", file=sys.stderr)
        return 1
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "discord-gateway": _discord_gateway,
    "chat": _chat,
    "report": _report,
    "channels": _channels,
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
