"""Bolt's installation and OAuth state stores on asyncpg, bot tokens sealed to their rows.

Bolt's defaults write plaintext tokens under $HOME; slack_sdk's SQLAlchemy stores would add
an ORM and keep the tokens in the clear.  These implement the async interfaces directly.
We ask for bot scopes only, so an installation *is* its bot: no user tokens are stored.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.installation_store.models.bot import Bot
from slack_sdk.oauth.installation_store.models.installation import Installation
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore

from db import audit
from db.sealing import Keyring

TABLE = "slack_installations"
log = logging.getLogger(__name__)


class PgInstallationStore(AsyncInstallationStore):
    def __init__(self, pool: asyncpg.Pool, keyring: Keyring, client_id: str) -> None:
        self.pool, self.keyring, self.client_id = pool, keyring, client_id

    @property
    def logger(self) -> logging.Logger:
        return log

    async def async_save(self, installation: Installation) -> None:
        await self.async_save_bot(installation.to_bot())

    async def async_save_bot(self, bot: Bot) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            row_id: int = await conn.fetchval(
                "INSERT INTO slack_installations (client_id, app_id, enterprise_id, team_id, team_name,"
                " is_enterprise_install, bot_id, bot_user_id, bot_scopes, bot_token_expires_at)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                " ON CONFLICT (client_id, enterprise_id, team_id) DO UPDATE SET app_id = excluded.app_id,"
                " team_name = excluded.team_name, is_enterprise_install = excluded.is_enterprise_install,"
                " bot_id = excluded.bot_id, bot_user_id = excluded.bot_user_id, bot_scopes = excluded.bot_scopes,"
                " bot_token_expires_at = excluded.bot_token_expires_at, installed_at = now() RETURNING id",
                self.client_id,
                bot.app_id,
                bot.enterprise_id or "",
                bot.team_id or "",
                bot.team_name,
                bool(bot.is_enterprise_install),
                bot.bot_id,
                bot.bot_user_id,
                ",".join(bot.bot_scopes or []),
                datetime.fromtimestamp(bot.bot_token_expires_at, UTC) if bot.bot_token_expires_at else None,
            )
            await conn.execute(
                "UPDATE slack_installations SET bot_token_sealed = $2, bot_refresh_token_sealed = $3 WHERE id = $1",
                row_id,
                self._seal(bot.bot_token, "bot_token_sealed", row_id),
                self._seal(bot.bot_refresh_token, "bot_refresh_token_sealed", row_id),
            )
            await audit.record(
                conn, tenant_id=None, actor=f"slack:{bot.enterprise_id or bot.team_id}", action="slack.installed",
                subject_type="slack_installation", subject_id=row_id, details={"team_name": bot.team_name},
            )  # fmt: skip

    async def async_find_bot(
        self, *, enterprise_id: str | None, team_id: str | None, is_enterprise_install: bool | None = False
    ) -> Bot | None:
        row = await self._row(enterprise_id, None if is_enterprise_install else team_id)
        if row is None or row["bot_token_sealed"] is None:
            return None
        return Bot(**self._fields(row))

    async def async_find_installation(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None = None,
        is_enterprise_install: bool | None = False,
    ) -> Installation | None:
        row = await self._row(enterprise_id, None if is_enterprise_install else team_id)
        if row is None or row["bot_token_sealed"] is None:
            return None
        return Installation(user_id=row["installer_user_id"] or "", **self._fields(row))

    async def async_delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        await self._delete(enterprise_id, team_id)

    async def async_delete_installation(
        self, *, enterprise_id: str | None, team_id: str | None, user_id: str | None = None
    ) -> None:
        if user_id is None:  # user installations are not kept; a user's deletion leaves the bot
            await self._delete(enterprise_id, team_id)

    async def async_delete_all(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        await self._delete(enterprise_id, team_id)

    async def _row(self, enterprise_id: str | None, team_id: str | None) -> asyncpg.Record | None:
        async with self.pool.acquire() as conn:
            row: asyncpg.Record | None = await conn.fetchrow(
                "SELECT * FROM slack_installations WHERE client_id = $1 AND enterprise_id = $2 AND team_id = $3",
                self.client_id,
                enterprise_id or "",
                team_id or "",
            )
        return row

    async def _delete(self, enterprise_id: str | None, team_id: str | None) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(
                "DELETE FROM slack_installations WHERE client_id = $1 AND enterprise_id = $2 AND team_id = $3",
                self.client_id,
                enterprise_id or "",
                team_id or "",
            )

    def _seal(self, value: str | None, column: str, row_id: int) -> str | None:
        return None if value is None else self.keyring.seal(value.encode(), table=TABLE, column=column, row_id=row_id)

    def _open(self, row: asyncpg.Record, column: str) -> str | None:
        sealed = row[column]
        return (
            None if sealed is None else self.keyring.open(sealed, table=TABLE, column=column, row_id=row["id"]).decode()
        )

    def _fields(self, row: asyncpg.Record) -> dict[str, Any]:
        expires = row["bot_token_expires_at"]
        return {
            "app_id": row["app_id"],
            "enterprise_id": row["enterprise_id"] or None,
            "team_id": row["team_id"] or None,
            "team_name": row["team_name"],
            "bot_token": self._open(row, "bot_token_sealed"),
            "bot_refresh_token": self._open(row, "bot_refresh_token_sealed"),
            "bot_token_expires_at": int(expires.timestamp()) if expires else None,
            "bot_id": row["bot_id"],
            "bot_user_id": row["bot_user_id"],
            "bot_scopes": row["bot_scopes"],
            "is_enterprise_install": row["is_enterprise_install"],
            "installed_at": row["installed_at"].timestamp(),
        }


class PgOAuthStateStore(AsyncOAuthStateStore):
    """Single-use states (hashed), 10 minutes: a replayed callback finds nothing."""

    def __init__(self, pool: asyncpg.Pool, lifetime: timedelta = timedelta(minutes=10)) -> None:
        self.pool, self.lifetime = pool, lifetime

    @property
    def logger(self) -> logging.Logger:
        return log

    async def async_issue(self, *args: Any, **kwargs: Any) -> str:
        state = secrets.token_urlsafe(32)
        async with self.pool.acquire() as conn:
            await conn.execute("DELETE FROM slack_oauth_states WHERE expires_at < now()")
            await conn.execute(
                "INSERT INTO slack_oauth_states (state_hash, expires_at) VALUES ($1, now() + $2::interval)",
                _hash(state),
                self.lifetime,
            )
        return state

    async def async_consume(self, state: str) -> bool:
        async with self.pool.acquire() as conn:
            found = await conn.fetchval(
                "DELETE FROM slack_oauth_states WHERE state_hash = $1 RETURNING expires_at > now()", _hash(state)
            )
        return bool(found)


def _hash(state: str) -> bytes:
    return hashlib.sha256(state.encode()).digest()
