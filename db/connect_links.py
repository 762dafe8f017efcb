"""Browser connect flows: one-time links, the OAuth flow behind them, and the connection it makes.

A *connect link* (``create``/``consume``) is what a user is handed to open ``/connect/start``:
random, single use, 15 minutes, bound to one user and one provider, kept as a hash.  Opening
it spends nothing (``confirmable``); the page's confirm button spends it (``consume_confirmed``,
with the form token made for that page), then starts an OAuth *flow* (``start_flow``): an
``oauth_states`` row plus, where the provider takes PKCE, its verifier.  The callback ends it
(``finish_flow``) and records the connection (``record_connection``): sealed tokens, the
provider's id of the user (which push webhooks carry, so ``push_targets`` can find the
connection) and a ``connection.created`` event.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import asyncpg

from db import connections, events, oauth_states
from db.oauth_states import _hash as _state_hash  # the one definition of how a state is kept
from db.sealing import Keyring

LIFETIME = timedelta(minutes=15)


class FormTokenMismatch(Exception):
    """A confirm form whose token is not the link's: not posted from our page."""


@dataclass(frozen=True, slots=True)
class ConnectLink:
    user_id: int
    provider: str


@dataclass(frozen=True, slots=True)
class Flow:
    """A started OAuth flow: the state to send, and the PKCE verifier (None without PKCE)."""

    state: str = field(repr=False)
    code_verifier: str | None = field(repr=False)


@dataclass(frozen=True, slots=True)
class FinishedFlow:
    user_id: int
    provider: str
    redirect_uri: str
    code_verifier: str | None = field(repr=False)


@dataclass(frozen=True, slots=True)
class PushTarget:
    connection_id: int
    # A run of this connection is already waiting: a burst of events needs only that one.
    pending: bool
    # That run's id (the oldest, when several wait), for widening it to a push's scope.
    pending_run: int | None = None


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def create(conn: asyncpg.Connection, user_id: int, provider: str) -> str:
    """A new link token for the user and provider (returned, never stored); expired links of
    any user are swept on the way."""
    token = secrets.token_urlsafe(32)
    await conn.execute("DELETE FROM connect_links WHERE expires_at < now()")
    await conn.execute(
        "INSERT INTO connect_links (token_hash, user_id, provider, expires_at)"
        " VALUES ($1, $2, $3, now() + $4::interval)",
        _hash(token),
        user_id,
        provider,
        LIFETIME,
    )
    return token


async def consume(conn: asyncpg.Connection, token: str) -> ConnectLink | None:
    """The link ``token`` opens, once: the row is deleted.  None when unknown, used or expired."""
    row = await conn.fetchrow(
        "DELETE FROM connect_links WHERE token_hash = $1 RETURNING user_id, provider, expires_at > now() AS live",
        _hash(token),
    )
    if row is None or not row["live"]:
        return None
    return ConnectLink(row["user_id"], row["provider"])


async def confirmable(conn: asyncpg.Connection, token: str) -> tuple[ConnectLink, str] | None:
    """The live link ``token`` opens, without spending it, and the form token its confirm page
    carries: made on the first look, the same on every later one (a preview fetching the link
    first must not break the page the user opens).  None when unknown, used or expired."""
    row = await conn.fetchrow(
        "UPDATE connect_links SET form_token = coalesce(form_token, $2)"
        " WHERE token_hash = $1 AND expires_at > now() RETURNING user_id, provider, form_token",
        _hash(token),
        secrets.token_urlsafe(32),
    )
    return (ConnectLink(row["user_id"], row["provider"]), row["form_token"]) if row else None


async def consume_confirmed(conn: asyncpg.Connection, token: str, form_token: str) -> ConnectLink | None:
    """``consume``, for the form token ``confirmable`` gave out for this link; raises
    FormTokenMismatch, and the link stays, for any other (a form not posted from our page)."""
    row = await conn.fetchrow("SELECT form_token FROM connect_links WHERE token_hash = $1 FOR UPDATE", _hash(token))
    if row is None:
        return None
    if row["form_token"] is None or not hmac.compare_digest(row["form_token"].encode(), form_token.encode()):
        raise FormTokenMismatch("the form token is not this link's")
    return await consume(conn, token)


async def peek(conn: asyncpg.Connection, token: str) -> ConnectLink | None:
    """The link ``token`` opens, without spending it: a page may show what the link is for
    before a POST spends it.  None when unknown, used or expired."""
    row = await conn.fetchrow(
        "SELECT user_id, provider FROM connect_links WHERE token_hash = $1 AND expires_at > now()", _hash(token)
    )
    return ConnectLink(row["user_id"], row["provider"]) if row else None


async def start_flow(conn: asyncpg.Connection, user_id: int, provider: str, redirect_uri: str, *, pkce: bool) -> Flow:
    """An OAuth state for the user's flow (``db.oauth_states``), with a PKCE verifier when asked."""
    state, _ = await oauth_states.create(conn, user_id, provider, redirect_uri)
    if not pkce:
        return Flow(state, None)
    # RFC 7636 §4.1: 43 to 128 unreserved characters; 64 random bytes give 86.
    verifier = secrets.token_urlsafe(64)
    await conn.execute("UPDATE oauth_states SET code_verifier = $2 WHERE state_hash = $1", _state_hash(state), verifier)
    return Flow(state, verifier)


async def finish_flow(conn: asyncpg.Connection, state: str, provider: str) -> FinishedFlow | None:
    """The flow ``state`` belongs to, once (``oauth_states.consume``), with its verifier.  None
    when the state is unknown, used, expired or was started for another provider."""
    verifier: str | None = await conn.fetchval(
        "SELECT code_verifier FROM oauth_states WHERE state_hash = $1", _state_hash(state)
    )
    found = await oauth_states.consume(conn, state, provider)
    if found is None:
        return None
    return FinishedFlow(found.user_id, found.provider, found.redirect_uri, verifier)


async def record_connection(
    conn: asyncpg.Connection,
    keyring: Keyring,
    *,
    user_id: int,
    provider: str,
    tokens: dict[str, Any],
    provider_user_id: str | None,
) -> int:
    """Create or re-activate the user's connection with sealed ``tokens``, note the provider's
    id of the user (None clears a stale one: better no push than one routed to the wrong
    person) and publish ``connection.created``, in one transaction.  Returns the connection id."""
    async with conn.transaction():
        connection_id = await connections.upsert(conn, keyring, user_id=user_id, provider=provider, tokens=tokens)
        tenant_id: int = await conn.fetchval(
            "UPDATE connections c SET provider_user_id = $2 FROM users u"
            " WHERE c.id = $1 AND u.id = c.user_id RETURNING u.tenant_id",
            connection_id,
            provider_user_id,
        )
        data = {"connection_id": connection_id, "user_id": user_id, "provider": provider}
        await events.publish(conn, tenant_id, events.CONNECTION_CREATED, data)
    return connection_id


async def push_targets(conn: asyncpg.Connection, provider: str, provider_user_id: str) -> list[PushTarget]:
    """The active connections a provider's push for ``provider_user_id`` concerns (more than one
    when several of our users connected the same account)."""
    rows = await conn.fetch(
        "SELECT c.id, (SELECT min(r.id) FROM sync_runs r WHERE r.connection_id = c.id AND r.status = 'pending')"
        " AS pending_run FROM connections c"
        " WHERE c.provider = $1 AND c.provider_user_id = $2 AND c.status = 'active' ORDER BY c.id",
        provider,
        provider_user_id,
    )
    return [PushTarget(r["id"], r["pending_run"] is not None, r["pending_run"]) for r in rows]
