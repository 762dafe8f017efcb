"""Plain SQL migrations, applied in order, once, under an advisory lock.

Files are ``db/migrations/NNNN_name.sql``.  All pending files run in one transaction that
first takes a transaction-scoped advisory lock, so two processes starting at once serialise:
the second waits, then finds nothing left to do.  Each applied file is recorded with a
checksum; a file edited after it was applied stops the run rather than drift silently.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

import asyncpg

# Any constant works as long as nothing else in the database uses it: "carebeac" in ASCII.
LOCK_ID = 0x6361726562656163


class MigrationError(Exception):
    """A migration failed, or an applied one was edited."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available() -> list[Migration]:
    folder = resources.files("db") / "migrations"
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
    return [Migration(f.name.removesuffix(".sql"), f.read_text()) for f in files]


async def migrate(conn: asyncpg.Connection, migrations: list[Migration] | None = None) -> list[str]:
    """Apply what is pending; returns the versions applied now (empty when up to date)."""
    migrations = available() if migrations is None else migrations
    applied_now: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK_ID)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        applied = {r["version"]: r["checksum"] for r in await conn.fetch("SELECT * FROM schema_migrations")}
        for migration in migrations:
            if migration.version in applied:
                if applied[migration.version] != migration.checksum:
                    raise MigrationError(f"migration {migration.version} was edited after it was applied")
                continue
            try:
                await conn.execute(migration.sql)
            except asyncpg.PostgresError as exc:
                raise MigrationError(f"migration {migration.version} failed: {exc}") from exc
            await conn.execute(
                "INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2)",
                migration.version,
                migration.checksum,
            )
            applied_now.append(migration.version)
    return applied_now


async def pending(conn: asyncpg.Connection) -> list[str]:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")} if exists else set()
    return [m.version for m in available() if m.version not in done]
