"""``carebeacon doctor``: is the configuration valid, and can we reach what it names?"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, cast

import asyncpg
import redis

from bot.api.settings import ApiSettings
from bot.settings import BotSettings
from db import DbSettings, SettingError, open_services
from db.env import Env
from db.migrate import pending
from db.reseal import SEALED_COLUMNS
from pipeline.providers import build_providers
from pipeline.settings import PipelineSettings
from pipeline.webhooks.settings import WebhookSettings


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def diagnose(env: Env) -> list[Check]:
    checks: list[Check] = []
    parsed: dict[str, object] = {}
    for name, reader in (
        ("bot", BotSettings.from_env),
        ("api", ApiSettings.from_env),
        ("db", DbSettings.from_env),
        ("pipeline", PipelineSettings.from_env),
        ("webhooks", WebhookSettings.from_env),
    ):
        try:
            parsed[name] = reader(env)
            checks.append(Check(f"settings: {name}", True, "valid"))
        except SettingError as exc:
            checks.append(Check(f"settings: {name}", False, str(exc), f"set {exc.name} as described; see README"))
    checks.append(_providers(env))
    db_settings, pipeline_settings = parsed.get("db"), parsed.get("pipeline")
    if not isinstance(db_settings, DbSettings) or not isinstance(pipeline_settings, PipelineSettings):
        return checks
    try:
        services = open_services(db_settings, pipeline_settings.redis_url)
    except SettingError as exc:
        return [
            *checks,
            Check("seal keys", False, str(exc), "run `carebeacon sealkey` and set CAREBEACON_SEAL_KEYS"),
        ]
    except Exception as exc:
        return [
            *checks,
            Check("embedded servers", False, f"could not start: {exc}", "check the data directory"),
        ]
    try:
        mode = "embedded" if services.embedded else "configured"
        checks.append(
            Check(
                "seal keys",
                True,
                f"{len(services.keyring.keys)} key(s), sealing with {services.keyring.current_kid!r}",
            )
        )
        checks += asyncio.run(_postgres(services.database_url, mode, [kid for kid, _ in services.keyring.keys]))
        checks.append(_redis(services.redis_url, mode))
    finally:
        services.close()
    return checks


def _providers(env: Env) -> Check:
    """Which wearables this deployment can connect; a provider without credentials is fine,
    a malformed credential or URL is not."""
    try:
        providers = build_providers(env)
    except SettingError as exc:
        return Check("providers", False, str(exc), f"set {exc.name} as described; see docs/providers.md")
    listed = [p.id if p.available else f"{p.id} (unavailable: {p.unavailable_reason})" for p in providers.values()]
    return Check("providers", True, ", ".join(listed))


def providers_report(env: Env) -> str:
    """``carebeacon providers``: one line per provider with its id, name, and whether it is
    configured here or what it needs.  Raises SettingError for a malformed setting."""
    lines = []
    for provider in build_providers(env).values():
        status = "configured" if provider.available else f"unavailable: {provider.unavailable_reason}"
        lines.append(f"{provider.id:<13} {provider.display_name:<16} {status}")
    return "\n".join(lines)


async def _postgres(url: str, mode: str, kids: list[str]) -> list[Check]:
    try:
        conn = await asyncpg.connect(url, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return [
            Check(
                "postgres",
                False,
                f"unreachable ({type(exc).__name__}: {exc})",
                "start PostgreSQL or fix DATABASE_URL",
            )
        ]
    try:
        version = await conn.fetchval("SHOW server_version")
        checks = [Check("postgres", True, f"{mode}, PostgreSQL {version}")]
        todo = await pending(conn)
        if todo:
            checks.append(
                Check("migrations", False, f"{len(todo)} pending: {', '.join(todo)}", "run `carebeacon migrate`")
            )
            return checks
        checks.append(Check("migrations", True, "up to date"))
        unknown: set[str] = set()
        for table, column in SEALED_COLUMNS:
            rows = await conn.fetch(
                f"SELECT DISTINCT split_part({column}, '.', 2) AS kid FROM {table} WHERE {column} IS NOT NULL"
            )
            unknown |= {r["kid"] for r in rows} - set(kids)
        if unknown:
            fix = "add the missing keys to CAREBEACON_SEAL_KEYS, then `carebeacon reseal`"
            checks.append(Check("sealed values", False, f"sealed with keys not configured: {sorted(unknown)}", fix))
        else:
            checks.append(Check("sealed values", True, "all open with the configured keys"))
        return checks
    finally:
        await conn.close()


def _redis(url: str, mode: str) -> Check:
    try:
        client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        info = cast(dict[str, Any], client.info("server"))  # the sync client answers a dict
        version = info.get("redis_version")
        client.close()
        return Check("redis", True, f"{mode}, Redis {version}")
    except (redis.RedisError, OSError) as exc:
        return Check("redis", False, f"unreachable ({type(exc).__name__})", "start Redis or fix REDIS_URL")


def report(checks: list[Check]) -> str:
    lines = []
    for check in checks:
        lines.append(f"{'ok ' if check.ok else 'BAD'}  {check.name:<18} {check.detail}")
        if not check.ok and check.fix:
            lines.append(f"     {'':<18} fix: {check.fix}")
    return "\n".join(lines)
