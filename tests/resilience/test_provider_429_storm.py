"""Drill 5: a storm of 429s from Oura, every request answered "Too Many Requests, Retry-After".

The sync actor turns a 429's Retry-After into ``dramatiq.Retry(delay)``.  Dramatiq counts such
a retry against the actor's ``max_retries`` (3 for syncs) like any other, so the budget is four
attempts, Retry-After apart.  The drill runs two storms at once, on different accounts:

* one shorter than the budget (7 s, Retry-After 3 s): every sync backs off per Retry-After and
  completes, with all its readings, and nobody is marked failed;
* one that outlasts it: each sync makes exactly its four attempts, Retry-After apart, and is
  marked failed on the fourth, never before.

The storm to survive is 30 s.  With a Retry-After under 10 s, four attempts span less than that, so
such a storm leaves its users failed (dead letters, until ``carebeacon requeue`` or the next
scheduled sync): the budget counts attempts, not time.  The report says so.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.actors import SYNC_RETRIES
from tests.fakes import oura
from tests.fakes.oura import Account
from tests.helpers import eventually
from tests.resilience.checks import counted
from tests.resilience.conftest import Drill
from tests.resilience.peers import StormOura

RETRY_AFTER = 3
SHORT_STORM = 7.0  # under the budget: attempts at 0, 3, 6 and 9 s
LONG_STORM = 120.0  # over it, and over the drill
DAYS = [datetime.now(UTC).date() - timedelta(days=n) for n in (3, 2, 1)]
ROWS = len(DAYS) * oura.ITEMS_PER_DAY
# Dramatiq sends a delayed message back no earlier than asked; the fake's clock may differ by a tick.
TICK = 0.05


@pytest.fixture
def storm_oura() -> Iterator[StormOura]:
    server = StormOura().start()
    yield server
    server.stop()


def limited(account: Account, storm_end: float) -> list[float]:
    """When the account's requests that got a 429 arrived (one per attempt: the first request fails it)."""
    return [r.at for r in account.requests if r.at < storm_end]


@pytest.mark.timeout(60)
async def test_a_429_storm_backs_off_per_retry_after_and_fails_nobody_before_the_retries_are_spent(
    drill: Drill, storm_oura: StormOura
) -> None:
    accounts = [storm_oura.add_account(documents=oura.documents(DAYS)) for _ in range(5)]
    short, long = accounts[:3], accounts[3:]
    drill.env |= storm_oura.env()
    users = await drill.patients(len(accounts), {}, provider="oura", tokens=[a.tokens() for a in accounts])
    connection_of = {a.name: p.connection_id for a, p in zip(accounts, users, strict=True)}
    for account in short:
        storm_oura.storm(account, SHORT_STORM, RETRY_AFTER)
    for account in long:
        storm_oura.storm(account, LONG_STORM, RETRY_AFTER)
    started = time.monotonic()
    drill.start_worker("worker", threads=len(accounts))
    await drill.request_syncs([p.connection_id for p in users])

    # Every state each run passes through, seen every 50 ms: a run marked failed early would show.
    seen: set[tuple[int, str, int]] = set()

    async def storms_played_out() -> bool:
        rows = await drill.pool.fetch("SELECT connection_id, status, attempts FROM sync_runs")
        seen.update((r["connection_id"], r["status"], r["attempts"]) for r in rows)
        status = {r["connection_id"]: r["status"] for r in rows}
        return all(status.get(connection_of[a.name]) == "completed" for a in short) and all(
            status.get(connection_of[a.name]) == "failed" for a in long
        )

    await eventually(storms_played_out, timeout=40, what="the short storm's syncs to complete, the long's to fail")
    elapsed = time.monotonic() - started

    runs = {r["connection_id"]: r for r in await drill.pool.fetch("SELECT * FROM sync_runs")}
    budget = SYNC_RETRIES + 1
    # Nobody failed before the last attempt.
    assert sorted((c, a) for c, s, a in seen if s == "failed") == sorted((connection_of[a.name], budget) for a in long)
    for account in accounts:
        storm_end = storm_oura.storms[account.name][0]
        hits = limited(account, storm_end)
        gaps = [later - earlier for earlier, later in zip(hits, hits[1:], strict=False)]
        assert all(gap >= RETRY_AFTER - TICK for gap in gaps), f"a retry came sooner than Retry-After: {gaps}"
        run = runs[connection_of[account.name]]
        if account in short:
            assert (run["status"], run["rows_written"]) == ("completed", ROWS)
            assert 2 <= run["attempts"] == len(hits) + 1 <= budget
            # The attempt that succeeded came Retry-After after the last 429, too.
            after_storm = [r.at for r in account.requests if r.at >= storm_end]
            assert after_storm[0] - hits[-1] >= RETRY_AFTER - TICK
        else:
            assert (run["status"], run["attempts"], len(hits)) == ("failed", budget, budget)
            assert "429" in run["error"]
    failed_events = await drill.pool.fetchval("SELECT count(*) FROM events WHERE type = 'sync.failed'")
    assert failed_events == len(long)
    stored = await drill.pool.fetchval(
        "SELECT count(*) FROM metrics WHERE connection_id = ANY($1)", [connection_of[a.name] for a in short]
    )
    sessions = await drill.pool.fetchval(
        "SELECT count(*) FROM sessions WHERE connection_id = ANY($1)", [connection_of[a.name] for a in short]
    )
    counted(
        "oura 429 storm",
        retry_after_s=RETRY_AFTER,
        storms_s=f"{SHORT_STORM:g} (3 users) and {LONG_STORM:g} (2 users)",
        elapsed_s=f"{elapsed:.1f}",
        attempts={a.name: runs[connection_of[a.name]]["attempts"] for a in accounts},
        readings_expected=len(short) * ROWS,
        readings_stored=stored + sessions,
        users_failed=f"{len(long)} (the long storm's, each after {budget} attempts)",
        lost=len(short) * ROWS - stored - sessions,
    )
    assert stored + sessions == len(short) * ROWS
