"""Re-encrypt every sealed column under the keyring's current key.

Each sealed column is listed here once; a migration that adds one adds it to SEALED_COLUMNS.
Rows move in batches, each in its own transaction, so a long reseal holds no lock for long and
can be interrupted and run again.
"""

from __future__ import annotations

import asyncpg

from db.sealing import PREFIX, Keyring

SEALED_COLUMNS: tuple[tuple[str, str], ...] = (
    ("connections", "tokens_sealed"),
    ("notification_channels", "config_sealed"),
    ("deployment_keys", "secret_sealed"),
    ("ingest_secrets", "secret_sealed"),
    ("slack_installations", "bot_token_sealed"),
    ("slack_installations", "bot_refresh_token_sealed"),
    ("chat_followups", "response_sealed"),
    ("webhook_endpoints", "secret_sealed"),
    ("webhook_endpoints", "previous_secret_sealed"),
)


async def reseal(conn: asyncpg.Connection, keyring: Keyring, batch: int = 500) -> dict[str, int]:
    """Returns the number of values resealed per ``table.column``."""
    current = f"{PREFIX}.{keyring.current_kid}."
    counts: dict[str, int] = {}
    for table, column in SEALED_COLUMNS:
        done = 0
        while True:
            async with conn.transaction():
                rows = await conn.fetch(
                    f"SELECT id, {column} AS sealed FROM {table}"
                    f" WHERE {column} IS NOT NULL AND NOT starts_with({column}, $1) ORDER BY id LIMIT $2 FOR UPDATE",
                    current,
                    batch,
                )
                for row in rows:
                    plain = keyring.open(row["sealed"], table=table, column=column, row_id=row["id"])
                    fresh = keyring.seal(plain, table=table, column=column, row_id=row["id"])
                    await conn.execute(f"UPDATE {table} SET {column} = $2 WHERE id = $1", row["id"], fresh)
            done += len(rows)
            if len(rows) < batch:
                break
        counts[f"{table}.{column}"] = done
    return counts
