"""Bench: slash-command acknowledgement latency, open loop, ours against a bare Bolt app, same run.

    .venv/bin/python bench/slash.py [--quick] [--rate 200] [--seconds 60] [--warmup 5]
        [--busy-users 300] [--database-url URL] [--redis-url URL]

Ours: ``bot.app.make_app`` with the Slack front end on (SLACK_SIGNING_SECRET and a bot token),
a workspace bound to a tenant and a linked user, served by aiohttp on 127.0.0.1 in a process of
its own, as ``carebeacon web`` serves it.  The command is ``/help``, run as every command is: the
tenant and link lookup and the reply, in the ack when they are done within the answer budget,
else after an empty ack and POSTed to the request's response_url.  Every answer is counted: in
the ack's body, or at the peer.

Baseline, in the same run: a bare ``slack_bolt.async_app.AsyncApp`` with the same signing
secret and token, whose only listener acks ``/help`` with nothing, mounted with the same
aiohttp adapter (``to_bolt_request`` / ``to_aiohttp_response``) in a process of its own.

Load: open loop.  Request i is due at ``start + i / rate`` on a fixed clock, sent then whatever
happened to earlier ones, and its latency runs from that due time to the end of the response,
so a stalled server (or a stalled load generator) shows in the tail instead of slowing the
arrivals down (coordinated omission).  Each body is a real slash-command payload, signed as Slack
signs it (``v0=`` HMAC-SHA256 of ``v0:{timestamp}:{body}``) when it is sent, over keep-alive
connections.  An error is a failure to connect, a status other than 200, or an answer later than
Slack's 3 s deadline.

Phases: bare idle, ours idle, and then (not with ``--quick``) with the pipeline saturating the
cores: real ``dramatiq pipeline.worker`` processes (the Procfile's sync and analytics workers,
5 and 3 threads) syncing ``--busy-users`` simulator patients with 5-minute glucose and analysing
each run, kept topped up by a feeder process; ours busy, then bare busy.  Each phase is preceded
by ``--warmup`` unmeasured seconds at the same rate.  A fake Slack (``auth.test``, response_urls)
runs in its own process too, so neither side pays for it.

PostgreSQL comes from ``--database-url`` or CAREBEACON_BENCH_DATABASE_URL, else an embedded
server; Redis from ``--redis-url`` or CAREBEACON_BENCH_REDIS_URL (a database number of its own:
the bench deletes the ``dramatiq:*`` keys there before and after), else an embedded one.  The work
happens in a fresh ``cb_bench_<hex>`` database dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import multiprocessing
import os
import platform
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import asyncpg
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import openloop  # noqa: E402
from servers import (  # noqa: E402
    Workers,
    bench_env,
    clear_queues,
    cpu_times,
    create_database,
    drop_database,
    log_errors,
    postgres,
    process_cpu,
    procfile_workers,
    redis_server,
)

from db.pool import connect  # noqa: E402

SECRET = "bench-signing-secret-0123456789ab"
BOT_TOKEN = "xoxb-bench-0000"
TEAM, USER, COMMAND = "TBENCH0001", "UBENCH0001", "/help"
SLACK_DEADLINE_S = 3.0
TARGET_IDLE_MS, TARGET_BUSY_MS, TARGET_RATIO = 10.0, 100.0, 1.5
# The Procfile's process types that sync and analyse (one process each, their thread counts).
BUSY_TYPES = ("sync", "analytics")
BACKLOG = 24  # sync runs kept pending or running while busy: enough that no worker thread idles


# -- processes of their own: the fake Slack, the two servers, the feeder -------------------------


def peer_main(pipe: Connection) -> None:
    asyncio.run(_peer(pipe))


async def _peer(pipe: Connection) -> None:
    """``auth.test`` for the bot token, and response_urls that count what arrives per run."""
    replies: dict[str, list[int]] = {}  # run → [posts, posts with a non-empty text]

    async def auth_test(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {BOT_TOKEN}":
            return web.json_response({"ok": False, "error": "invalid_auth"})
        return web.json_response({"ok": True, "team_id": TEAM, "user_id": "UBOT", "bot_id": "B0BOT", "url": ""})

    async def respond(request: web.Request) -> web.Response:
        body = await request.json()
        counts = replies.setdefault(request.match_info["run"], [0, 0])
        counts[0] += 1
        counts[1] += bool(isinstance(body, dict) and body.get("text"))
        return web.Response(text="ok")

    async def stats(request: web.Request) -> web.Response:
        posts, with_text = replies.get(request.match_info["run"], [0, 0])
        return web.json_response({"posts": posts, "with_text": with_text})

    app = web.Application()
    app.router.add_post("/api/auth.test", auth_test)
    app.router.add_post("/resp/{run}/{id}", respond)
    app.router.add_get("/stats/{run}", stats)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, backlog=4096).start()
    pipe.send(runner.addresses[0][1])
    await asyncio.get_running_loop().run_in_executor(None, pipe.recv)  # until told to stop
    await runner.cleanup()


def server_main(kind: str, inline: bool, env: dict[str, str], peer_port: int, log: str, pipe: Connection) -> None:
    # Our logging goes where production's goes (stderr, at LOG_LEVEL): to a file here.
    sys.stderr = open(log, "a", buffering=1)  # noqa: SIM115  (the process's lifetime)
    asyncio.run(_server(kind, inline, env, peer_port, pipe))


async def _server(kind: str, inline: bool, env: dict[str, str], peer_port: int, pipe: Connection) -> None:
    """Serve ``kind`` ("ours" or "bare") on a free port, sent down ``pipe``; until told to stop.

    ``inline``: Bolt's ``process_before_response=True`` (the ack listener awaited in the request,
    lazy listeners still started as tasks), patched into ours: the what-if of ``--inline-ack``."""
    from slack_bolt.async_app import AsyncAck, AsyncApp

    api_url = f"http://127.0.0.1:{peer_port}/api/"
    cleanup: list[Any] = []
    if kind == "ours":
        if inline:
            import bot.slack.app

            class InlineAck(AsyncApp):  # a no-op while bot.slack.app.build itself passes True
                def __init__(self, **kwargs: Any) -> None:
                    super().__init__(**kwargs | {"process_before_response": True})

            setattr(bot.slack.app, "AsyncApp", InlineAck)  # noqa: B010
        from bot.app import make_app
        from bot.settings import BotSettings
        from bot.slack.settings import SlackSettings
        from pipeline import runtime
        from pipeline.logs import configure_logging

        configure_logging(env)
        rt = runtime.start(env)
        pool = await runtime.pool()
        slack = SlackSettings(signing_secret=SECRET, bot_token=BOT_TOKEN, api_url=api_url)
        app = make_app(pool, rt.broker, settings=BotSettings(public_url="https://carebeacon.example"), slack=slack)
        cleanup.append(runtime.close_pool)
    else:
        from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
        from slack_sdk.web.async_client import AsyncWebClient

        bolt = AsyncApp(
            signing_secret=SECRET,
            client=AsyncWebClient(token=BOT_TOKEN, base_url=api_url),
            process_before_response=inline,  # Bolt's default is False
        )

        @bolt.command(COMMAND)
        async def ack_only(ack: AsyncAck) -> None:
            await ack()

        async def events(request: web.Request) -> web.Response:
            return await to_aiohttp_response(await bolt.async_dispatch(await to_bolt_request(request)))

        app = web.Application()
        app.router.add_post("/slack/events", events)
    # As bot.up serves the web app: an AppRunner and a TCPSite (access log at its default, which
    # our logging configuration silences; the bare app never configures logging).
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, backlog=4096).start()
    pipe.send(runner.addresses[0][1])
    await asyncio.get_running_loop().run_in_executor(None, pipe.recv)
    await runner.cleanup()
    for close in cleanup:
        await close()


def feeder_main(env: dict[str, str], connection_ids: list[int], pipe: Connection) -> None:
    asyncio.run(_feeder(env, connection_ids, pipe))


async def _feeder(env: dict[str, str], connection_ids: list[int], pipe: Connection) -> None:
    """Keep BACKLOG sync runs pending or running, round-robin over the connections, until told."""
    from pipeline import runtime, triggers

    runtime.start(env)
    import pipeline.actors  # noqa: F401  (declares the actors on this runtime's broker)

    pool = await runtime.pool()
    pipe.send(0)  # started
    loop = asyncio.get_running_loop()
    stop = loop.run_in_executor(None, pipe.recv)
    turn = 0
    while not stop.done():
        open_runs = await pool.fetchval("SELECT count(*) FROM sync_runs WHERE status IN ('pending', 'running')")
        for _ in range(BACKLOG - open_runs):
            await triggers.request_sync(pool, connection_ids[turn % len(connection_ids)], "daily")
            turn += 1
        await asyncio.wait([stop], timeout=0.25)
    await runtime.close_pool()
    runtime.stop()


# -- the load generator (this process) -----------------------------------------------------------


def signed(body: str) -> dict[str, str]:
    """Headers as Slack sends them: ``v0=`` HMAC-SHA256 of ``v0:{timestamp}:{body}``."""
    ts = str(int(time.time()))
    digest = hmac.new(SECRET.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": "application/x-www-form-urlencoded",
        "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
    }


def bodies(peer_port: int, run: str, count: int) -> list[str]:
    """Slash-command payloads as Slack posts them, each with its own response_url and trigger_id."""
    return [
        urlencode(
            {
                "token": "deprecated-verification-token",
                "team_id": TEAM,
                "team_domain": "bench-clinic",
                "channel_id": "C0WARD",
                "channel_name": "ward",
                "user_id": USER,
                "user_name": "nurse",
                "command": COMMAND,
                "text": "",
                "api_app_id": "A0BENCH",
                "is_enterprise_install": "false",
                "response_url": f"http://127.0.0.1:{peer_port}/resp/{run}/{i}",
                "trigger_id": f"{1000 + i}.{secrets.token_hex(4)}.{secrets.token_hex(8)}",
            }
        )
        for i in range(count)
    ]


@dataclass
class Phase(openloop.Phase):
    answers: int = -1  # replies in an ack or POSTed to a response_url (ours), -1 when not counted
    in_ack: int = 0  # of which in the ack
    syncs: int = -1  # sync runs completed during the phase, -1 when not busy


def prepare(body: str) -> tuple[str, dict[str, str]]:
    return body, signed(body)


async def run_phase(
    http: aiohttp.ClientSession, name: str, server: tuple[int, int], peer_port: int, args: argparse.Namespace,
    pool: asyncpg.Pool | None = None,
) -> Phase:  # fmt: skip
    """Warm up, then measure ``name`` against ``server`` (its port and pid)."""
    url = f"http://127.0.0.1:{server[0]}/slack/events"
    warm = secrets.token_hex(4)
    warm_payloads = bodies(peer_port, warm, int(args.rate * args.warmup))
    warmed = await openloop.fire(http, url, args.rate, warm_payloads, prepare, 200, SLACK_DEADLINE_S)
    if name.startswith("ours"):  # the warm-up's lazy work must not spill into the measured seconds
        await followups(http, peer_port, warm, len(warm_payloads) - len(in_ack(warmed)))
    run = secrets.token_hex(4)
    payloads = bodies(peer_port, run, int(args.rate * args.seconds))
    syncs_before = await completed_syncs(pool) if pool is not None else None
    cpu_before, server_before, began = cpu_times(), process_cpu(server[1]), time.monotonic()
    fired = await openloop.fire(http, url, args.rate, payloads, prepare, 200, SLACK_DEADLINE_S)
    if name.startswith("ours"):  # the lazy work still running is part of what these requests cost
        answered_in_ack = len(in_ack(fired))
        followed = await followups(http, peer_port, run, len(payloads) - answered_in_ack)
    took, cpu_after, server_after = time.monotonic() - began, cpu_times(), process_cpu(server[1])
    syncs = (await completed_syncs(pool)) - syncs_before if pool is not None and syncs_before is not None else -1
    busy = -1.0
    if cpu_before is not None and cpu_after is not None and cpu_after[1] > cpu_before[1]:
        busy = (cpu_after[0] - cpu_before[0]) / (cpu_after[1] - cpu_before[1])
    phase = Phase(
        name, len(payloads), fired.latencies_ms, fired.errors, fired.late_ms, took, os.getloadavg()[0], busy,
        syncs=syncs,
    )  # fmt: skip
    if name.startswith("ours"):
        phase.answers, phase.in_ack = answered_in_ack + followed, answered_in_ack
    if server_before is not None and server_after is not None:
        phase.server_cpu_ms = (server_after - server_before) / len(payloads) * 1000
    return phase


def in_ack(fired: openloop.Fired) -> list[int]:
    """The requests whose ack carried the reply (a message with a text); an empty ack has none."""
    return [i for i, body in fired.answered if body and "text" in json.loads(body)]


async def followups(http: aiohttp.ClientSession, peer_port: int, run: str, expected: int) -> int:
    """The follow-ups (with a text) that reached the response_urls, waiting up to 30 s for stragglers."""
    deadline = time.monotonic() + 30
    while True:
        async with http.get(f"http://127.0.0.1:{peer_port}/stats/{run}") as resp:
            got: int = (await resp.json())["with_text"]
        if got >= expected or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.5)


async def completed_syncs(pool: asyncpg.Pool) -> int:
    found: int = await pool.fetchval("SELECT count(*) FROM sync_runs WHERE status = 'completed'")
    return found


# -- data and the run ----------------------------------------------------------------------------


async def seed(conn: asyncpg.Connection, env: dict[str, str], busy_users: int) -> list[int]:
    """The clinic: TEAM bound to it, USER linked to a nurse; and ``busy_users`` simulator patients
    with 5-minute glucose for the workers.  Returns their connection ids."""
    from db import chat, connections, tenants
    from db.sealing import Keyring
    from pipeline.providers.simulator import issue_tokens

    keyring = Keyring.parse(env["CAREBEACON_SEAL_KEYS"])
    tenant_id = await tenants.ensure_tenant(conn, "bench-clinic", "Bench clinic")
    await chat.bind_workspace(conn, "slack", TEAM, tenant_id, "Bench workspace")
    nurse = await tenants.ensure_user(conn, tenant_id, "nurse-1", "Nurse")
    await conn.execute(
        "INSERT INTO chat_identities (platform, workspace_id, chat_user_id, tenant_id, user_id, linked_via)"
        " VALUES ('slack', $1, $2, $3, $4, 'bench')",
        TEAM,
        USER,
        tenant_id,
        nurse,
    )
    ids = []
    for n in range(busy_users):
        user_id = await tenants.ensure_user(conn, tenant_id, f"p{n}", f"Patient {n}")
        ids.append(
            await connections.upsert(
                conn, keyring, user_id=user_id, provider="simulator", tokens=issue_tokens(),
                settings={"seed": f"p{n}", "cgm": True},
            )
        )  # fmt: skip
    return ids


@dataclass
class Report:
    pg_version: str
    phases: list[Phase]
    log_errors: dict[str, tuple[int, str]] = field(default_factory=dict)  # server → (lines, first)


async def measure(admin_url: str, redis_url: str, args: argparse.Namespace, scratch: Path) -> Report:
    from db.sealing import Keyring

    url = await create_database(admin_url)
    env = bench_env(url, redis_url, Keyring.new_entry("bench"), scratch) | {"LOG_FORMAT": "json"}
    ctx = multiprocessing.get_context("spawn")
    ends: list[Connection] = []
    procs: list[multiprocessing.process.BaseProcess] = []

    def spawn(target: Any, *target_args: Any) -> tuple[int, int]:
        """Start ``target`` in a process of its own; the port it reports, and its pid."""
        ours_end, theirs = ctx.Pipe()
        proc = ctx.Process(target=target, args=(*target_args, theirs), daemon=True)
        proc.start()
        ends.append(ours_end)
        procs.append(proc)
        if not ours_end.poll(120):
            raise RuntimeError(f"{getattr(target, '__name__', target)} did not start")
        port: int = ours_end.recv()
        assert proc.pid is not None
        return port, proc.pid

    clear_queues(redis_url)
    workers: Workers | None = None
    failed = False
    try:
        conn = await connect(url)  # with the JSON codecs the db layer expects
        try:
            connection_ids = await seed(conn, env, 0 if args.quick else args.busy_users)
            pg_version = await conn.fetchval("SHOW server_version")
        finally:
            await conn.close()
        peer, _ = spawn(peer_main)
        bare = spawn(server_main, "bare", False, env, peer, str(scratch / "bare.log"))
        ours = spawn(server_main, "ours", False, env, peer, str(scratch / "ours.log"))
        if args.inline_ack:
            bare_inline = spawn(server_main, "bare", True, env, peer, str(scratch / "bare-inline.log"))
            ours_inline = spawn(server_main, "ours", True, env, peer, str(scratch / "ours-inline.log"))
        report = Report(pg_version, [])
        connector = aiohttp.TCPConnector(limit=0)  # open loop: never queue in the client
        timeout = aiohttp.ClientTimeout(total=10)
        pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
        async with pool, aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            report.phases.append(await run_phase(http, "bare idle", bare, peer, args))
            report.phases.append(await run_phase(http, "ours idle", ours, peer, args))
            if args.inline_ack:
                report.phases.append(await run_phase(http, "bare+inline idle", bare_inline, peer, args))
                report.phases.append(await run_phase(http, "ours+inline idle", ours_inline, peer, args))
            if not args.quick:
                workers = Workers(procfile_workers(BUSY_TYPES), env, scratch, nice=args.worker_nice)
                await workers.ready()
                spawn(feeder_main, env, connection_ids)
                await asyncio.sleep(args.settle)  # first syncs (30 days each) under way on every thread
                report.phases.append(await run_phase(http, "ours busy", ours, peer, args, pool))
                report.phases.append(await run_phase(http, "bare busy", bare, peer, args, pool))
                if args.inline_ack:
                    report.phases.append(await run_phase(http, "ours+inline busy", ours_inline, peer, args, pool))
        return report
    except BaseException:
        failed = True
        for name in ("ours.log", "bare.log", "ours-inline.log", "bare-inline.log"):
            path = scratch / name
            if path.exists() and path.stat().st_size:
                print(f"--- {name}\n{path.read_text(errors='replace')[-3000:]}", file=sys.stderr)
        if workers is not None:
            print(workers.tails(3000), file=sys.stderr)
        raise
    finally:
        for end in ends[::-1]:
            with contextlib.suppress(OSError):
                end.send("stop")
        for proc in procs[::-1]:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
        if workers is not None:
            workers.stop()
        if not failed:
            for name in ("ours", "bare", "ours-inline", "bare-inline"):
                report.log_errors[name] = log_errors(scratch / f"{name}.log")
        clear_queues(redis_url)
        await drop_database(admin_url, url)


def render(report: Report, args: argparse.Namespace) -> str:
    by_name = {p.name: p for p in report.phases}
    busy = procfile_workers(BUSY_TYPES)
    lines = [
        f"date      {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"machine   nproc {os.cpu_count()}, {platform.processor() or platform.machine()},"
        f" load average at start {' '.join(f'{x:.2f}' for x in args.start_load)},"
        f" at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}; PostgreSQL {report.pg_version}",
        f"versions  Python {platform.python_version()}, slack-bolt {version('slack_bolt')},"
        f" slack-sdk {version('slack_sdk')}, aiohttp {version('aiohttp')}, dramatiq {version('dramatiq')}",
        f"busy      {len(BUSY_TYPES)} worker processes ({', '.join(f'{t.name} -t {t.threads}' for t in busy)}),"
        f" nice {args.worker_nice}, {args.busy_users} simulator patients with 5-minute glucose, {BACKLOG} runs open"
        if not args.quick
        else "busy      no busy phase (--quick)",
        f"load      {COMMAND} at {args.rate:g}/s for {args.seconds:g} s per phase, open loop"
        f" ({int(args.rate * args.seconds):,} requests; {args.warmup:g} s warm-up before each),"
        f" signed v0; latency from the due time to the end of the response",
        openloop.header(16),
    ]
    for p in report.phases:
        context = []
        if p.syncs >= 0:
            context.append(f"{p.syncs:,} syncs done")
        if p.answers >= 0:
            context.append(f"answered {p.answers:,}/{p.sent:,} ({p.in_ack:,} in the ack)")
        lines.append(p.row(16, context))
    for server, (count, first) in report.log_errors.items():
        if count:
            lines.append(f"log       {server}: {count} error line(s): {first}")
    for state in ("idle", "busy"):
        ours, bare = by_name.get(f"ours {state}"), by_name.get(f"bare {state}")
        if ours and bare:
            lines.append(
                f"ratio     ours/bare p99 {state}: {ours.percentile(99) / bare.percentile(99):.2f}x"
                f" (p50 {ours.percentile(50) / bare.percentile(50):.2f}x)"
            )
    idle = by_name["ours idle"]
    lines.append(f"target    {verdict(idle.percentile(99) < TARGET_IDLE_MS)} ours p99 < {TARGET_IDLE_MS:.0f} ms idle"
                 f" ({idle.percentile(99):.1f} ms)")  # fmt: skip
    if "ours busy" in by_name:
        busy = by_name["ours busy"]
        lines.append(f"target    {verdict(busy.percentile(99) < TARGET_BUSY_MS)} ours p99 < {TARGET_BUSY_MS:.0f} ms"
                     f" busy ({busy.percentile(99):.1f} ms)")  # fmt: skip
    ours_errors = sum(p.error_count for p in report.phases if p.name in ("ours idle", "ours busy"))
    lines.append(f"target    {verdict(ours_errors == 0)} zero errors (ours: {ours_errors})")
    # Judged in every state measured: like against like (a busy bare Bolt shares the same cores).
    ratios = {
        state: by_name[f"ours {state}"].percentile(99) / by_name[f"bare {state}"].percentile(99)
        for state in ("idle", "busy")
        if f"ours {state}" in by_name and f"bare {state}" in by_name
    }
    shown = ", ".join(f"{state} {r:.2f}x" for state, r in ratios.items())
    lines.append(f"target    {verdict(all(r <= TARGET_RATIO for r in ratios.values()))} ours p99 within"
                 f" {TARGET_RATIO}x of bare Bolt's ({shown})")  # fmt: skip
    return "\n".join(lines)


def result_line(report: Report, args: argparse.Namespace) -> str:
    """The run as one ``RESULT {json}`` line, for bench/all.py to render into docs/benchmarks.md."""
    by_name = {p.name: p for p in report.phases}
    rows = []
    for state, target in (("idle", TARGET_IDLE_MS), ("busy", TARGET_BUSY_MS)):
        ours, bare = by_name.get(f"ours {state}"), by_name.get(f"bare {state}")
        if ours is None or bare is None:
            continue
        ratio = ours.percentile(99) / bare.percentile(99)
        rows += [
            {
                "case": f"{COMMAND} ack p50 / p95 / p99, {state} (baseline: bare Bolt)",
                "baseline": " / ".join(f"{bare.percentile(q):.1f} ms" for q in (50, 95, 99)),
                "ours": " / ".join(f"{ours.percentile(q):.1f} ms" for q in (50, 95, 99)),
                "ratio": f"{ratio:.2f}x",
                "target": f"p99 < {target:.0f} ms",
                "result": verdict(ours.percentile(99) < target),
            },
            {
                "case": f"p99 ours / bare Bolt, {state}",
                "baseline": "",
                "ours": f"{ratio:.2f}x",
                "ratio": "",
                "target": f"≤ {TARGET_RATIO}x",
                "result": verdict(ratio <= TARGET_RATIO),
            },
        ]
    ours_errors = sum(p.error_count for p in report.phases if p.name in ("ours idle", "ours busy"))
    bare_errors = sum(p.error_count for p in report.phases if p.name in ("bare idle", "bare busy"))
    rows.append(
        {
            "case": "errors: refused, not 200, or later than 3 s",
            "baseline": f"{bare_errors}",
            "ours": f"{ours_errors}",
            "ratio": "",
            "target": "0",
            "result": verdict(ours_errors == 0),
        }
    )
    phases = ", ".join(p.name for p in report.phases)
    return "RESULT " + json.dumps(
        {
            "bench": "slash",
            "title": "Slash-command acknowledgement",
            "date": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
            "machine": f"nproc {os.cpu_count()}, {platform.processor() or platform.machine()}, load average"
            f" {args.start_load[0]:.2f} at the start and {os.getloadavg()[0]:.2f} at the end;"
            f" PostgreSQL {report.pg_version}",
            "size": f"{COMMAND} at {args.rate:g}/s for {args.seconds:g} s per phase, open loop"
            f" ({args.warmup:g} s warm-up each): {phases}",
            "rows": rows,
        },
        ensure_ascii=False,
    )


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=None, help="requests per second (default 200; quick: 50)")
    parser.add_argument("--seconds", type=float, default=None, help="measured seconds per phase (default 60; quick 3)")
    parser.add_argument("--warmup", type=float, default=None, help="unmeasured seconds before each phase (5; quick 1)")
    parser.add_argument("--busy-users", type=int, default=300, help="simulator patients the workers sync (300)")
    parser.add_argument(
        "--worker-nice",
        type=int,
        default=0,
        help="run the busy phase's workers under nice -n N (default 0: as deployed)",
    )
    parser.add_argument("--settle", type=float, default=20, help="seconds between starting the workers and measuring")
    parser.add_argument(
        "--inline-ack",
        action="store_true",
        help="also measure both apps with Bolt's process_before_response=True (what-if rows, not judged)",
    )
    parser.add_argument("--quick", action="store_true", help="50/s for 3 s, idle phases only: a smoke test")
    parser.add_argument("--database-url", help="an existing server (needs CREATE DATABASE); default: embedded")
    parser.add_argument("--redis-url", help="a Redis database of the bench's own; default: embedded")
    args = parser.parse_args(argv)
    args.rate = args.rate or (50 if args.quick else 200)
    args.seconds = args.seconds or (3 if args.quick else 60)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 5)
    return args


def main() -> None:
    args = parse()
    args.start_load = os.getloadavg()
    with (
        tempfile.TemporaryDirectory(prefix="cb-slash-") as tmp,
        postgres(args.database_url) as admin_url,
    ):
        scratch = Path(tmp)
        scratch.chmod(0o755)
        with redis_server(args.redis_url, scratch) as redis_url:
            report = asyncio.run(measure(admin_url, redis_url, args, scratch))
    print(render(report, args))
    print(result_line(report, args))


if __name__ == "__main__":
    main()
