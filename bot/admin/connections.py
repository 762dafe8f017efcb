"""The Connections page: status, last sync, token expiry, and the inactive ones with their reason.

Token expiry is the one field read from the sealed tokens: each row's tokens are opened, the
``expires_at`` kept and the rest dropped at once.  No token reaches a template.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from bot.admin.keys import KEYRING, SESSION
from bot.admin.render import PAGE_SIZE, before, keyset, link, page
from bot.state import POOL
from db.connections import TABLE, TOKENS
from db.sealing import Keyring, SealError

STATES = ("active", "inactive", "revoked", "error")

_SELECT = (
    "SELECT c.id, c.provider, c.status, c.status_reason, c.last_synced_at, c.updated_at, c.tokens_sealed,"
    " t.slug AS tenant, u.external_id, lr.status AS last_run_status, lr.id AS last_run_id"
    " FROM connections c JOIN users u ON u.id = c.user_id JOIN tenants t ON t.id = u.tenant_id"
    " LEFT JOIN LATERAL (SELECT id, status FROM sync_runs WHERE connection_id = c.id"
    "  ORDER BY created_at DESC LIMIT 1) lr ON true"
)


def token_expiry(keyring: Keyring, connection_id: int, sealed: str | None) -> tuple[datetime | None, str]:
    """(expires_at, a note): the note says "none" (no tokens or no expiry), or why it is unknown."""
    if sealed is None:
        return None, "no tokens"
    try:
        opened = keyring.open_json(sealed, table=TABLE, column=TOKENS, row_id=connection_id)
    except SealError:
        return None, "sealed under a missing key"
    raw = opened.get("expires_at") if isinstance(opened, dict) else None
    del opened  # the tokens themselves go no further
    if not isinstance(raw, str):
        return None, "no expiry"
    try:
        expires = datetime.fromisoformat(raw)
    except ValueError:
        return None, "unreadable expiry"
    return (expires if expires.tzinfo else expires.replace(tzinfo=UTC)), ""


async def show(request: web.Request) -> web.StreamResponse:
    session = request[SESSION]
    status = request.query.get("status", "")
    status = status if status in (*STATES, "not-active") else ""
    tenant = request.query.get("tenant", "")[:63] if session.deployment_wide else ""
    raw_id = request.query.get("id", "")
    where: list[str] = []
    args: list[object] = []
    for clause, value in (
        ("u.tenant_id = $?", session.tenant_id),
        ("t.slug = $?", tenant or None),
        ("c.id = $?", int(raw_id) if raw_id.isdigit() and len(raw_id) < 19 else None),
        ("c.status = $?", status if status in STATES else None),
        ("c.id < $?", before(request)),
    ):
        if value is not None:
            args.append(value)
            where.append(clause.replace("$?", f"${len(args)}"))
    if status == "not-active":
        where.append("c.status <> 'active'")
    sql = _SELECT + (" WHERE " + " AND ".join(where) if where else "") + f" ORDER BY c.id DESC LIMIT {PAGE_SIZE + 1}"
    async with request.config_dict[POOL].acquire() as conn:
        found = keyset(await conn.fetch(sql, *args))
    keyring = request.config_dict[KEYRING]
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    for r in found.rows:
        expires, note = token_expiry(keyring, r["id"], r["tokens_sealed"])
        row = {k: v for k, v in dict(r).items() if k != "tokens_sealed"}
        rows.append(row | {"expires_at": expires, "expiry_note": note, "expired": bool(expires and expires <= now)})
    chosen = {"status": status, "tenant": tenant}
    more = link("/admin/connections", **chosen, before=found.next_before) if found.next_before else None
    return page(request, "connections.html", rows=rows, more=more, chosen=chosen, states=(*STATES, "not-active"))
