"""One sync run: claim, unseal, refresh, fetch, validate, upsert in batches, record.

Called by the ``sync`` actor.  Every step is safe to repeat: the claim stops a second
worker, the upsert turns a replayed reading into a no-op, and the run row tells the
reconciler what still needs doing.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from db import alerts, audit, connections, events, logcontext, metrics, sessions, sync_runs
from db.alerts import NewAlert
from db.connections import Connection
from db.metrics import Reading, UpsertCounts
from db.sealing import Keyring
from db.sessions import Session
from db.sync_runs import SyncRun
from pipeline import metrics as observed
from pipeline import vocabulary
from pipeline.errors import AccessTokenRejectedError, PermanentSyncError
from pipeline.providers import Provider, Window, get_provider
from pipeline.settings import PipelineSettings

log = logging.getLogger(__name__)

# Rows per upsert statement: big enough to amortise the round trip, small enough to stay quick.
BATCH_SIZE = 1000


@dataclass(frozen=True, slots=True)
class SyncOutcome:
    run_id: int
    user_id: int
    status: str
    window: Window | None = None
    counts: UpsertCounts = UpsertCounts()
    received: int = 0
    invalid: int = 0


def sync_window(settings: PipelineSettings, connection: Connection, trigger: str, now: datetime) -> Window:
    """An import: the retention period.  First sync: the last N days.  Daily job: the lookback.
    Otherwise: since the last sync, less the overlap, from the start of that (UTC) day, because a
    day's totals keep changing until the day ends and providers report them per day."""
    if trigger == "import":
        # A whole export: everything the weekly cleanup would keep (older readings would go).
        return Window(now - timedelta(days=settings.retention_days), now)
    if connection.last_synced_at is None:
        return Window(now - timedelta(days=settings.first_sync_days), now)
    if trigger == "daily":
        return Window(now - timedelta(days=settings.daily_lookback_days), now)
    since = min(connection.last_synced_at - settings.sync_overlap, now).astimezone(UTC)
    return Window(since.replace(hour=0, minute=0, second=0, microsecond=0), now)


def run_window(settings: PipelineSettings, connection: Connection, run: SyncRun, now: datetime) -> Window:
    """The run's own ``sync_window``, narrowed to what a push named when the run carries a scope."""
    scope = run.scope
    if scope is None:
        return sync_window(settings, connection, run.trigger, now)
    if scope.start is None or scope.end is None:
        return replace(sync_window(settings, connection, run.trigger, now), only=scope.only)
    return Window(scope.start, scope.end, scope.only)


async def run_sync(
    pool: asyncpg.Pool, keyring: Keyring, settings: PipelineSettings, run_id: int, claimant: str | None = None
) -> SyncOutcome | None:
    """Run the sync; returns None when the run is not ours to run (finished, or held by another
    worker).  ``claimant`` is the message id: see ``sync_runs.claim``.

    Raises TransientSyncError / PermanentSyncError from the provider; the caller records them.
    """
    started = time.monotonic()
    logcontext.add(sync_run_id=run_id)
    async with pool.acquire() as conn:
        claimed = await sync_runs.claim(conn, run_id, settings.stale_after, claimant)
        if claimed is None:
            log.info("sync run %s is finished or held elsewhere; skipping", run_id)
            return None
        run, connection = claimed.run, claimed.connection
        if connection is not None:
            logcontext.add(connection_id=connection.id, user_id=connection.user_id, provider=connection.provider)
        if connection is None or connection.status != "active":
            reason = "connection deleted" if connection is None else f"connection is {connection.status}"
            await sync_runs.finish(conn, run_id, "skipped", reason)
            observed.SYNC_RUNS.labels(connection.provider if connection else "unknown", "skipped").inc()
            log.info("sync run %s skipped: %s", run_id, reason)
            return SyncOutcome(run_id, connection.user_id if connection else 0, "skipped")
        provider = get_provider(connection.provider)
        tokens = await _fresh_tokens(conn, keyring, provider, connection)
        window = run_window(settings, connection, run, datetime.now(UTC))
        # Stored before any reading is: the window of an attempt cut short tells what it may have written.
        await sync_runs.set_window(conn, run_id, window.start, window.end)

    try:
        counts, received, invalid, batch, session_batch = await _store(
            pool, provider, tokens, window, connection, run_id
        )
    except AccessTokenRejectedError:
        await _expire_tokens(pool, keyring, connection.id, tokens)
        raise

    async with pool.acquire() as conn:
        counts += await _write(conn, connection, batch, session_batch)
        summary = {
            "sync_run_id": run_id,
            "connection_id": connection.id,
            "user_id": connection.user_id,
            "provider": connection.provider,
            "window": {"start": window.start.isoformat(), "end": window.end.isoformat()},
            "rows_received": received,
            "rows_written": counts.written,
            "rows_unchanged": counts.unchanged,
            "rows_invalid": invalid,
        }
        # A push's narrow run leaves the rest of the gap to the next full one: no last sync moved.
        synced_at = window.end if run.scope is None else None
        await sync_runs.complete(conn, run_id, connection, synced_at, counts, received, invalid, summary)
    log.info(
        "sync run %s connection %s (%s): %d readings and sessions, %d new, %d updated, %d unchanged, %d invalid",
        run_id, connection.id, provider.id, received, counts.inserted, counts.updated, counts.unchanged, invalid,
    )  # fmt: skip
    observed.observe_sync(connection.provider, time.monotonic() - started, received=received,
                          written=counts.written, unchanged=counts.unchanged, invalid=invalid)  # fmt: skip
    return SyncOutcome(run_id, connection.user_id, "completed", window, counts, received, invalid)


async def _store(
    pool: asyncpg.Pool, provider: Provider, tokens: dict[str, Any], window: Window, connection: Connection, run_id: int
) -> tuple[UpsertCounts, int, int, list[Reading], list[Session]]:
    """Fetch, validate and upsert each full batch; returns the counts, readings received and
    invalid, and the last batches, not yet written: the caller writes them with the completion."""
    counts, received, invalid = UpsertCounts(), 0, 0
    batch: list[Reading] = []
    # Sessions go to their own table, so they batch on their own, at the same size.
    session_batch: list[Session] = []
    async for item in provider.fetch(tokens, window, connection.settings):
        received += 1
        if isinstance(item, Session):
            problem, noun = vocabulary.session_problem(item, window.start, window.end), "session"
        else:
            problem, noun = vocabulary.problem(item, window.start, window.end), "reading"
        if problem is not None:
            invalid += 1
            log.warning("sync run %s connection %s: skipped a %s: %s", run_id, connection.id, noun, problem)
            continue
        if isinstance(item, Session):
            session_batch.append(item)
        else:
            batch.append(item)
        if len(batch) >= BATCH_SIZE:
            async with pool.acquire() as conn:
                counts += await _write(conn, connection, batch, [])
            batch = []
        if len(session_batch) >= BATCH_SIZE:
            async with pool.acquire() as conn:
                counts += await _write(conn, connection, [], session_batch)
            session_batch = []
    return counts, received, invalid, batch, session_batch


async def _write(
    conn: asyncpg.Connection, connection: Connection, batch: list[Reading], session_batch: list[Session]
) -> UpsertCounts:
    """Upsert each non-empty batch, one statement apiece; returns their counts added up."""
    counts = UpsertCounts()
    owner = (connection.user_id, connection.provider, connection.id)
    if batch:
        counts += await metrics.upsert(conn, *owner, batch)
    if session_batch:
        counts += await sessions.upsert(conn, *owner, session_batch)
    return counts


async def _fresh_tokens(
    conn: asyncpg.Connection, keyring: Keyring, provider: Provider, connection: Connection
) -> dict[str, Any]:
    """Unsealed tokens, refreshed first when they expire soon.

    The refresh holds the connection's row lock: with rotating refresh tokens, a manual and a
    scheduled sync refreshing at once would each spend the same refresh token, and one of the
    two grants would be revoked.  The second waits, then finds fresh tokens and uses them.
    """
    tokens = connection.tokens(keyring)
    if not provider.needs_refresh(tokens):
        return tokens
    async with conn.transaction():
        locked = await connections.load(conn, connection.id, for_update=True)
        tokens = locked.tokens(keyring) if locked else tokens
        if provider.needs_refresh(tokens):
            tokens = await provider.refresh(tokens)
            await connections.save_tokens(conn, keyring, connection.id, tokens)
            log.info("connection %s: tokens refreshed and resealed", connection.id)
    return tokens


async def _expire_tokens(pool: asyncpg.Pool, keyring: Keyring, connection_id: int, rejected: dict[str, Any]) -> None:
    """The provider refused an access token before its expiry: mark it expired, so the next
    attempt refreshes first.  Only if it is still the stored one: a sync that refreshed in the
    meantime saved good tokens, and they must not be spent again."""
    async with pool.acquire() as conn, conn.transaction():
        locked = await connections.load(conn, connection_id, for_update=True)
        if locked is None:
            return
        stored = locked.tokens(keyring)
        if stored.get("access_token") == rejected.get("access_token"):
            await connections.save_tokens(
                conn, keyring, connection_id, stored | {"expires_at": datetime.now(UTC).isoformat()}
            )
            log.info("connection %s: access token refused; marked expired so the retry refreshes", connection_id)


async def record_failure(
    pool: asyncpg.Pool, run_id: int, error: str, *, final: bool, retry_in: timedelta | None = None
) -> None:
    """Hand the run back as pending for the next attempt (due in ``retry_in``), or, on the last
    one, fail it: it becomes a dead letter (``carebeacon requeue``) and integrators get
    ``sync.failed``; the third such failure in a row raises one alert for the user."""
    alert_id = None
    async with pool.acquire() as conn, conn.transaction():
        await sync_runs.finish(conn, run_id, "failed" if final else "pending", error, None if final else retry_in)
        if not final:
            return
        connection = await _failed(conn, run_id, error)
        if connection is not None:
            # The third failure in a row tells the user, once per streak (the alert's dedupe key).
            alert_id = await alerts.raise_sync_failing(conn, connection.id, _display_name(connection.provider))
    if alert_id is not None:
        _notify(alert_id)


async def _failed(conn: asyncpg.Connection, run_id: int, error: str) -> Connection | None:
    """The audit event and the integrators' ``sync.failed`` of a run that failed for good."""
    connection = await _connection_of(conn, run_id)
    if connection is None:
        return None
    await audit.record(
        conn,
        tenant_id=connection.tenant_id,
        actor="pipeline",
        action="wearable_sync",
        subject_type="sync_run",
        subject_id=run_id,
        details={"status": "failed", "error": error},
    )
    data = {"sync_run_id": run_id, "connection_id": connection.id, "user_id": connection.user_id,
            "provider": connection.provider, "error": error}  # fmt: skip
    await events.publish(conn, connection.tenant_id, events.SYNC_FAILED, data)
    observed.SYNC_RUNS.labels(connection.provider, "failed").inc()
    return connection


def _display_name(provider_id: str) -> str:
    try:
        return get_provider(provider_id).display_name
    except PermanentSyncError:
        return provider_id


def _notify(alert_id: int) -> None:
    # Imported here: pipeline.actors imports this module.  After the commit, so the worker sees the row.
    from pipeline import actors
    from pipeline.triggers import enqueue

    enqueue(actors.notify, alert_id)


async def disconnect(pool: asyncpg.Pool, run_id: int, error: str) -> int | None:
    """The provider refused our refresh token: fail the run, mark the connection inactive and
    tell the user to reconnect, in one transaction, so nobody sees the run failed while the
    connection still looks active.  Returns the new alert's id (None when already told today).
    This alert replaces the "keeps failing" one: the user has one thing to do, reconnect."""
    async with pool.acquire() as conn, conn.transaction():
        await sync_runs.finish(conn, run_id, "failed", error)
        connection = await _failed(conn, run_id, error)
        if connection is None:
            return None
        await connections.set_status(conn, connection.id, "inactive", f"token refresh refused: {error}")
        provider = get_provider(connection.provider).display_name
        log.warning("connection %s (%s) marked inactive: the refresh token was refused", connection.id, provider)
        return await alerts.insert(
            conn,
            NewAlert(
                user_id=connection.user_id,
                category="connection",
                severity="warning",
                metric=None,
                title=f"Reconnect {provider}",
                body=f"{provider} no longer accepts CareBeacon's access. Use /connect to link it again;"
                " until then no new readings arrive.",
                observed_value=None,
                threshold=None,
                recorded_at=None,
                dedupe_key=f"reconnect:{connection.id}:{datetime.now(UTC).date().isoformat()}",
                kind="connection",
            ),
        )


async def _connection_of(conn: asyncpg.Connection, run_id: int) -> Connection | None:
    connection_id = await conn.fetchval("SELECT connection_id FROM sync_runs WHERE id = $1", run_id)
    return await connections.load(conn, connection_id) if connection_id is not None else None
