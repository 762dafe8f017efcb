"""Chat front ends: workspace → tenant, chat identity → user, and the one-time links between them.

A link binds a chat identity (platform, workspace, chat user) to a CareBeacon user, and needs
two proofs: the chat identity (a link token made by ``/connect`` for that identity, then the
same identity proven in the browser with Sign in with Slack or Discord OAuth) and the
CareBeacon user (an enrolment code the tenant gave that user).  Tokens, codes and OIDC states
are random, kept only as SHA-256 hashes, expire, and are used once.

Also here: the /sync follow-ups (where to post a result, sealed) and /score chart images.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

import asyncpg

from db import audit
from db.sealing import Keyring

LINK_LIFETIME = timedelta(minutes=10)
ENROLMENT_LIFETIME = timedelta(days=7)
FLOW_LIFETIME = timedelta(minutes=10)
CHART_LIFETIME = timedelta(minutes=30)
FOLLOWUPS, RESPONSE = "chat_followups", "response_sealed"


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


# -- workspaces and identities -----------------------------------------------------------------


async def bind_workspace(
    conn: asyncpg.Connection, platform: str, workspace_id: str, tenant_id: int, name: str = ""
) -> int:
    """Map a Slack team/enterprise or Discord guild to a tenant (re-enabling it); its row id.

    A workspace already bound to another tenant keeps that tenant: moving one is a delete and a
    new bind, deliberately, so no link silently changes tenant.  Raises ValueError then."""
    row = await conn.fetchrow(
        "INSERT INTO chat_workspaces (platform, workspace_id, tenant_id, name) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (platform, workspace_id) DO UPDATE SET disabled_at = NULL, name = excluded.name"
        " RETURNING id, tenant_id",
        platform,
        workspace_id,
        tenant_id,
        name,
    )
    if row["tenant_id"] != tenant_id:
        raise ValueError(f"{platform} workspace {workspace_id} belongs to another tenant")
    workspace_row: int = row["id"]
    return workspace_row


async def workspace_tenant(conn: asyncpg.Connection, platform: str, workspace_id: str) -> int | None:
    """The tenant of an enabled workspace, or None (unknown or uninstalled)."""
    found: int | None = await conn.fetchval(
        "SELECT tenant_id FROM chat_workspaces WHERE platform = $1 AND workspace_id = $2 AND disabled_at IS NULL",
        platform,
        workspace_id,
    )
    return found


async def caller(
    executor: asyncpg.Connection | asyncpg.Pool, platform: str, workspace_id: str, chat_user_id: str
) -> tuple[int | None, int | None]:
    """The enabled workspace's tenant and the identity's CareBeacon user, in one round trip:
    every command and click asks this before anything else.  A link made in another tenant counts
    as none; an unknown or uninstalled workspace gives (None, None)."""
    row = await executor.fetchrow(
        "SELECT w.tenant_id, i.user_id FROM chat_workspaces w"
        " LEFT JOIN chat_identities i ON i.platform = w.platform AND i.workspace_id = w.workspace_id"
        "  AND i.chat_user_id = $3 AND i.revoked_at IS NULL AND i.tenant_id = w.tenant_id"
        " WHERE w.platform = $1 AND w.workspace_id = $2 AND w.disabled_at IS NULL",
        platform,
        workspace_id,
        chat_user_id,
    )
    return (row["tenant_id"], row["user_id"]) if row else (None, None)


async def disable_workspace(conn: asyncpg.Connection, platform: str, workspace_id: str, reason: str) -> int:
    """The app left the workspace: refuse its commands and revoke its links.  Returns the number
    of links revoked; audited."""
    async with conn.transaction():
        tenant_id = await conn.fetchval(
            "UPDATE chat_workspaces SET disabled_at = now() WHERE platform = $1 AND workspace_id = $2"
            " RETURNING tenant_id",
            platform,
            workspace_id,
        )
        revoked = await conn.fetch(
            "UPDATE chat_identities SET revoked_at = now() WHERE platform = $1 AND workspace_id = $2"
            " AND revoked_at IS NULL RETURNING id",
            platform,
            workspace_id,
        )
        if tenant_id is not None:
            await audit.record(
                conn, tenant_id=tenant_id, actor=f"{platform}:{workspace_id}", action="chat.workspace_disabled",
                subject_type="chat_workspace", subject_id=None, details={"reason": reason, "links": len(revoked)},
            )  # fmt: skip
    return len(revoked)


@dataclass(frozen=True, slots=True)
class Linked:
    """A live link: the chat identity's row id, its tenant and its CareBeacon user."""

    id: int
    tenant_id: int
    user_id: int


async def linked_user(conn: asyncpg.Connection, platform: str, workspace_id: str, chat_user_id: str) -> Linked | None:
    row = await conn.fetchrow(
        "SELECT id, tenant_id, user_id FROM chat_identities"
        " WHERE platform = $1 AND workspace_id = $2 AND chat_user_id = $3 AND revoked_at IS NULL",
        platform,
        workspace_id,
        chat_user_id,
    )
    return Linked(**dict(row)) if row else None


async def revoke_identity(conn: asyncpg.Connection, platform: str, workspace_id: str, chat_user_id: str) -> bool:
    """Unlink the chat identity; False when it was not linked."""
    found = await conn.fetchval(
        "UPDATE chat_identities SET revoked_at = now() WHERE platform = $1 AND workspace_id = $2"
        " AND chat_user_id = $3 AND revoked_at IS NULL RETURNING id",
        platform,
        workspace_id,
        chat_user_id,
    )
    return found is not None


# -- link tokens, enrolment codes, browser flows --------------------------------------------------


async def create_link_token(
    conn: asyncpg.Connection, *, platform: str, workspace_id: str, chat_user_id: str, tenant_id: int
) -> str:
    """A one-time token bound to the chat identity and tenant (10 minutes).  Expired ones go."""
    token = secrets.token_urlsafe(32)
    await conn.execute("DELETE FROM chat_link_tokens WHERE expires_at < now() - interval '1 day'")
    await conn.execute(
        "INSERT INTO chat_link_tokens (token_hash, platform, workspace_id, chat_user_id, tenant_id, expires_at)"
        " VALUES ($1, $2, $3, $4, $5, now() + $6::interval)",
        _hash(token),
        platform,
        workspace_id,
        chat_user_id,
        tenant_id,
        LINK_LIFETIME,
    )
    return token


@dataclass(frozen=True, slots=True)
class LinkToken:
    platform: str
    workspace_id: str
    chat_user_id: str
    tenant_id: int


async def peek_link_token(conn: asyncpg.Connection, token: str) -> LinkToken | None:
    """The token's identity when it is unused and unexpired; it stays unused."""
    row = await conn.fetchrow(
        "SELECT platform, workspace_id, chat_user_id, tenant_id FROM chat_link_tokens"
        " WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now()",
        _hash(token),
    )
    return LinkToken(**dict(row)) if row else None


async def create_enrolment_code(
    conn: asyncpg.Connection, tenant_id: int, user_id: int, created_by: str, lifetime: timedelta = ENROLMENT_LIFETIME
) -> str:
    """A code the tenant hands to one of its users to link a chat account; audited.
    Raises ValueError for a user of another tenant."""
    owner = await conn.fetchval("SELECT tenant_id FROM users WHERE id = $1", user_id)
    if owner != tenant_id:
        raise ValueError(f"no user {user_id} in tenant {tenant_id}")
    code = secrets.token_urlsafe(12)
    await conn.execute(
        "INSERT INTO chat_enrolment_codes (code_hash, tenant_id, user_id, created_by, expires_at)"
        " VALUES ($1, $2, $3, $4, now() + $5::interval)",
        _hash(code),
        tenant_id,
        user_id,
        created_by,
        lifetime,
    )
    await audit.record(
        conn, tenant_id=tenant_id, actor=created_by, action="chat.enrolment_code_created", subject_type="user",
        subject_id=user_id,
    )  # fmt: skip
    return code


async def start_flow(conn: asyncpg.Connection, token: str, code: str) -> tuple[str, str] | None:
    """Begin the browser proof for a valid link token and an enrolment code of the same tenant:
    returns (state, nonce) for the OIDC request, or None when either is invalid."""
    valid = await conn.fetchval(
        "SELECT 1 FROM chat_link_tokens t JOIN chat_enrolment_codes c ON c.tenant_id = t.tenant_id"
        " WHERE t.token_hash = $1 AND c.code_hash = $2 AND t.used_at IS NULL AND c.used_at IS NULL"
        " AND t.expires_at > now() AND c.expires_at > now()",
        _hash(token),
        _hash(code),
    )
    if valid is None:
        return None
    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(16)
    await conn.execute(
        "INSERT INTO chat_link_flows (state_hash, token_hash, code_hash, nonce, expires_at)"
        " VALUES ($1, $2, $3, $4, now() + $5::interval)",
        _hash(state),
        _hash(token),
        _hash(code),
        nonce,
        FLOW_LIFETIME,
    )
    return state, nonce


@dataclass(frozen=True, slots=True)
class Flow:
    token_hash: bytes
    code_hash: bytes
    nonce: str
    token: LinkToken


async def take_flow(conn: asyncpg.Connection, state: str) -> Flow | None:
    """The flow of ``state``, once (the row is deleted); None when unknown or expired."""
    row = await conn.fetchrow(
        "DELETE FROM chat_link_flows WHERE state_hash = $1 RETURNING token_hash, code_hash, nonce, expires_at",
        _hash(state),
    )
    if row is None or row["expires_at"] < await conn.fetchval("SELECT now()"):
        return None
    token = await conn.fetchrow(
        "SELECT platform, workspace_id, chat_user_id, tenant_id FROM chat_link_tokens WHERE token_hash = $1",
        row["token_hash"],
    )
    return Flow(row["token_hash"], row["code_hash"], row["nonce"], LinkToken(**dict(token)))


class LinkOutcome(StrEnum):
    LINKED = "linked"
    FORWARDED = "forwarded"  # the proven chat identity is not the one the link was made for
    USED = "used"  # the token or the code was used (or expired) meanwhile


async def _bind(
    conn: asyncpg.Connection, flow: Flow, *, proven_workspace: str, proven_user: str, via: str
) -> tuple[LinkOutcome, int | None]:
    t = flow.token
    async with conn.transaction():
        used = await conn.fetchval(
            "UPDATE chat_link_tokens SET used_at = now() WHERE token_hash = $1 AND used_at IS NULL"
            " AND expires_at > now() RETURNING 1",
            flow.token_hash,
        )
        chat = f"{t.platform}:{t.workspace_id}:{t.chat_user_id}"
        if used is None:
            return LinkOutcome.USED, None
        if (proven_workspace, proven_user) != (t.workspace_id, t.chat_user_id):
            await audit.record(
                conn, tenant_id=t.tenant_id, actor=f"{t.platform}:{proven_workspace}:{proven_user}",
                action="chat.link_refused", subject_type="chat_identity", subject_id=None,
                details={"reason": "forwarded link", "link_for": chat},
            )  # fmt: skip
            return LinkOutcome.FORWARDED, None
        user_id = await conn.fetchval(
            "UPDATE chat_enrolment_codes SET used_at = now() WHERE code_hash = $1 AND used_at IS NULL"
            " AND expires_at > now() AND tenant_id = $2 RETURNING user_id",
            flow.code_hash,
            t.tenant_id,
        )
        if user_id is None:
            raise _CodeUsed  # rolls the token back: it may still be used with a fresh code
        await conn.execute(
            "UPDATE chat_identities SET revoked_at = now() WHERE platform = $1 AND workspace_id = $2"
            " AND chat_user_id = $3 AND revoked_at IS NULL",
            t.platform,
            t.workspace_id,
            t.chat_user_id,
        )
        identity_id = await conn.fetchval(
            "INSERT INTO chat_identities (platform, workspace_id, chat_user_id, tenant_id, user_id, linked_via)"
            " VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            t.platform,
            t.workspace_id,
            t.chat_user_id,
            t.tenant_id,
            user_id,
            via,
        )
        await audit.record(
            conn, tenant_id=t.tenant_id, actor=chat, action="chat.linked", subject_type="user", subject_id=user_id,
            details={"chat_identity_id": identity_id, "via": via},
        )  # fmt: skip
    return LinkOutcome.LINKED, user_id


class _CodeUsed(Exception):
    pass


async def bind(
    conn: asyncpg.Connection, flow: Flow, *, proven_workspace: str, proven_user: str, via: str
) -> tuple[LinkOutcome, int | None]:
    """Consume the flow's token and code and link the identity, when the chat identity proven in
    the browser is the token's.  A forwarded link burns the token and links nothing.  Returns
    the outcome and the linked user id; audited either way."""
    try:
        return await _bind(conn, flow, proven_workspace=proven_workspace, proven_user=proven_user, via=via)
    except _CodeUsed:
        return LinkOutcome.USED, None


# -- /sync follow-ups ------------------------------------------------------------------------------


async def create_followup(
    conn: asyncpg.Connection, keyring: Keyring, *, platform: str, tenant_id: int, target: str, run_ids: list[int]
) -> int:
    """Remember where to post the result of ``run_ids``: ``target`` is a response URL (sealed)."""
    followup_id: int = await conn.fetchval(
        "INSERT INTO chat_followups (platform, tenant_id, sync_run_ids) VALUES ($1, $2, $3) RETURNING id",
        platform,
        tenant_id,
        run_ids,
    )
    sealed = keyring.seal(target.encode(), table=FOLLOWUPS, column=RESPONSE, row_id=followup_id)
    await conn.execute("UPDATE chat_followups SET response_sealed = $2 WHERE id = $1", followup_id, sealed)
    return followup_id


@dataclass(frozen=True, slots=True)
class RunSummary:
    provider: str
    status: str
    rows_written: int
    rows_received: int
    duration_ms: int | None
    error: str | None


@dataclass(frozen=True, slots=True)
class Followup:
    id: int
    platform: str
    target: str
    runs: tuple[RunSummary, ...]

    @property
    def finished(self) -> bool:
        return all(r.status in ("completed", "failed", "skipped") for r in self.runs)


async def pending_followup(conn: asyncpg.Connection, keyring: Keyring, followup_id: int) -> Followup | None:
    """The follow-up with its runs' state, or None when it was posted already (or is gone)."""
    row = await conn.fetchrow(
        "SELECT id, platform, response_sealed, sync_run_ids FROM chat_followups WHERE id = $1 AND posted_at IS NULL",
        followup_id,
    )
    if row is None or row["response_sealed"] is None:
        return None
    runs = await conn.fetch(
        "SELECT c.provider, r.status, r.rows_written, r.rows_received, r.duration_ms, r.error"
        " FROM sync_runs r JOIN connections c ON c.id = r.connection_id WHERE r.id = ANY($1::bigint[]) ORDER BY r.id",
        row["sync_run_ids"],
    )
    target = keyring.open(row["response_sealed"], table=FOLLOWUPS, column=RESPONSE, row_id=followup_id).decode()
    return Followup(row["id"], row["platform"], target, tuple(RunSummary(**dict(r)) for r in runs))


async def mark_followup_posted(conn: asyncpg.Connection, followup_id: int) -> bool:
    """Claim the post: True once, for the first caller; the response URL is wiped."""
    done = await conn.fetchval(
        "UPDATE chat_followups SET posted_at = now(), response_sealed = NULL WHERE id = $1 AND posted_at IS NULL"
        " RETURNING 1",
        followup_id,
    )
    return done is not None


# -- /score charts -----------------------------------------------------------------------------------


async def save_chart(conn: asyncpg.Connection, tenant_id: int, png: bytes) -> str:
    """Keep a chart for ``CHART_LIFETIME``; returns the token its URL carries.  Expired ones go."""
    token = secrets.token_urlsafe(24)
    await conn.execute("DELETE FROM chat_charts WHERE expires_at < now()")
    await conn.execute(
        "INSERT INTO chat_charts (token_hash, tenant_id, png, expires_at) VALUES ($1, $2, $3, now() + $4::interval)",
        _hash(token),
        tenant_id,
        png,
        CHART_LIFETIME,
    )
    return token


async def chart(conn: asyncpg.Connection, token: str) -> bytes | None:
    found: bytes | None = await conn.fetchval(
        "SELECT png FROM chat_charts WHERE token_hash = $1 AND expires_at > now()", _hash(token)
    )
    return found


def followup_lines(followup: Followup) -> list[str]:
    """The /sync result, one line per run: rows stored, duration, error.  No readings."""
    lines = []
    for run in followup.runs:
        took = f" in {run.duration_ms / 1000:.1f} s" if run.duration_ms is not None else ""
        if run.status == "completed":
            stored = f"{run.rows_written} new or changed rows stored ({run.rows_received} read)"
            lines.append(f"*{run.provider}*: {stored}{took}.")
        elif run.status == "skipped":
            lines.append(f"*{run.provider}*: skipped{took}" + (f" ({run.error})" if run.error else "") + ".")
        else:
            lines.append(f"*{run.provider}*: failed{took}: {run.error or 'unknown error'}.")
    return lines
