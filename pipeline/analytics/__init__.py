"""Analytics after a sync: aggregates, correlations, scores, CGM metrics, anomalies → alerts.

``analysis.analyse`` does the maths with no I/O; ``analyse_runs`` feeds it the last 90 days of
each run's user and stores what it found, and ``analyse_run`` is a batch of one.  Re-running it
changes nothing: results are upserted or replaced, and alerts are deduplicated by (rule, user,
metric, day).  ``analyse_waiting`` is the actors' path: the runs a message names, and others
waiting for analysis by then, as one batch.
"""

from __future__ import annotations

__all__ = ["AnalysisOutcome", "Phases", "analyse_run", "analyse_runs", "analyse_waiting"]

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from db import alerts, events, sync_runs
from db import analytics as stored
from db import scores as db_scores
from pipeline.analytics.analysis import CGM_DAYS, CORRELATION_DAYS, Analysis, Subject, analyse_many, check_from
from pipeline.analytics.columns import ReadingColumns
from pipeline.analytics.findings import to_alert
from pipeline.analytics.thresholds import DEFAULT, Thresholds

log = logging.getLogger(__name__)

# Only what survives the false-discovery control is kept: 30 metrics give ~3,000 pairs × lags a
# run, and a care team acts on the significant few (the analyze command prints them all).
SIGNIFICANT_Q = 0.05


@dataclass(frozen=True, slots=True)
class AnalysisOutcome:
    run_id: int
    user_id: int
    new_alert_ids: tuple[int, ...]
    analysis: Analysis | None


@dataclass(slots=True)
class Phases:
    """Seconds spent in each phase, added up over calls: what the analytics bench reports."""

    fetch: float = 0.0
    analyse: float = 0.0
    store: float = 0.0


_RUNS = (
    "SELECT r.id, r.window_start, r.window_end, c.user_id, u.tenant_id, u.timezone, u.alert_thresholds"
    " FROM sync_runs r JOIN connections c ON c.id = r.connection_id JOIN users u ON u.id = c.user_id"
    " WHERE r.id = ANY($1::bigint[])"
)


async def analyse_run(pool: asyncpg.Pool, run_id: int) -> AnalysisOutcome | None:
    """Analyse what the run stored.  None when the run is unknown or has no window.

    Only alerts created by this call are returned, so the caller notifies each once.
    """
    return (await analyse_runs(pool, [run_id]))[0]


async def analyse_runs(
    pool: asyncpg.Pool, run_ids: Sequence[int], phases: Phases | None = None
) -> list[AnalysisOutcome | None]:
    """``analyse_run`` for many runs, in the order given: one query for the runs, one for all
    their users' readings, then every result written in one transaction.

    Batching is for catching up (the reconciler, a recompute): ~100 runs a call keeps the fetch
    near a quarter of a million readings.  Two runs of one user are analysed one after the other.
    """
    async with pool.acquire() as conn:
        return await _analyse_runs(conn, run_ids, phases if phases is not None else Phases())


async def analyse_waiting(pool: asyncpg.Pool, run_ids: Sequence[int], limit: int) -> list[AnalysisOutcome]:
    """Analyse those of the runs still waiting for analysis, together with other completed runs
    waiting, up to ``limit`` runs; each is locked until its results are stored
    (``sync_runs.lock_unanalysed``).  Empty when none of the runs waits any more: analysed
    already, or being analysed elsewhere.

    After a burst of syncs, a message takes the runs waiting besides its own, and the messages of
    the runs it took find nothing to do: the fetch and the writes cost a fraction as much per run
    in a batch (docs/benchmarks.md, "Analytics recompute").  When analytics keeps up, a batch is
    the runs its message names.
    """
    async with pool.acquire() as conn, conn.transaction():
        locked = await sync_runs.lock_unanalysed(conn, run_ids, limit)
        outcomes = await _analyse_runs(conn, locked, Phases())
    return [outcome for outcome in outcomes if outcome is not None]


async def _analyse_runs(
    conn: asyncpg.Connection, run_ids: Sequence[int], phases: Phases
) -> list[AnalysisOutcome | None]:
    outcomes: dict[int, AnalysisOutcome | None] = {}
    pending = list(dict.fromkeys(run_ids))
    while pending:
        # A round holds each user once: the second run of a user sees what the first stored.
        runs = {r["id"]: r for r in await conn.fetch(_RUNS, pending)}
        known = [run_id for run_id in pending if run_id in runs and runs[run_id]["window_start"] is not None]
        outcomes |= {run_id: None for run_id in pending if run_id not in known}
        users: dict[int, asyncpg.Record] = {}
        later: list[int] = []
        for run_id in known:
            if runs[run_id]["user_id"] in users:
                later.append(run_id)
            else:
                users[runs[run_id]["user_id"]] = runs[run_id]
        outcomes |= {o.run_id: o for o in await _analyse_round(conn, list(users.values()), phases)}
        pending = later
    return [outcomes[run_id] for run_id in run_ids]


async def _analyse_round(conn: asyncpg.Connection, runs: list[asyncpg.Record], phases: Phases) -> list[AnalysisOutcome]:
    """Runs of distinct users: fetch, analyse, store."""
    if not runs:
        return []
    started = time.perf_counter()
    since = {run["user_id"]: run["window_end"] - timedelta(days=CORRELATION_DAYS + 1) for run in runs}
    # As arrays: a tenth of the cost of a Reading object per row (docs/benchmarks.md).
    found = await stored.readings(conn, since)
    fetched = time.perf_counter()
    results = _analyse_all(runs, [_columns(found[run["user_id"]]) for run in runs])
    analysed = time.perf_counter()
    async with conn.transaction():
        new_ids = await _store(conn, results)
        await sync_runs.mark_analysed_many(conn, [run["id"] for run, _, _ in results])
    phases.fetch += fetched - started
    phases.analyse += analysed - fetched
    phases.store += time.perf_counter() - analysed
    outcomes = []
    for run, result, _ in results:
        user_id = run["user_id"]
        if result is not None:
            scored = ", ".join(f"{d} {s.value:g}" for d, s in result.scores.items() if s.value is not None)
            log.info("score user %s %s: %s", user_id, result.day, scored or "insufficient data")
        if new_ids[user_id]:
            log.info("user %s: %d new alert(s) %s", user_id, len(new_ids[user_id]), new_ids[user_id])
        outcomes.append(AnalysisOutcome(run["id"], user_id, tuple(new_ids[user_id]), result))
    return outcomes


def _analyse_all(
    runs: Sequence[asyncpg.Record], readings: Sequence[ReadingColumns]
) -> list[tuple[asyncpg.Record, Analysis | None, date]]:
    """Each run's analysis and the first local day of its window, the engines run over all of them
    together (``analyse_many``)."""
    first_days, subjects = [], []
    for run, columns in zip(runs, readings, strict=True):
        zone = ZoneInfo(run["timezone"])
        first_day = run["window_start"].astimezone(zone).date()
        first_days.append(first_day)
        if len(columns):
            latest = datetime.fromtimestamp(float(columns.seconds.max()), zone).date()
            subjects.append(
                Subject(
                    columns,
                    run["timezone"],
                    check_from=check_from(first_day, latest),
                    today=run["window_end"].astimezone(zone).date(),
                    thresholds=_thresholds(run, run["user_id"]),
                )
            )
    analyses = iter(analyse_many(subjects, max_q=SIGNIFICANT_Q))
    return [
        (run, next(analyses) if len(columns) else None, first_day)
        for run, columns, first_day in zip(runs, readings, first_days, strict=True)
    ]


def _columns(found: stored.ReadingArrays) -> ReadingColumns:
    return ReadingColumns(found.names, found.metric, found.seconds, found.values)


def _thresholds(run: asyncpg.Record, user_id: int) -> Thresholds:
    if not run["alert_thresholds"]:
        return DEFAULT  # most users override nothing: no ~50 µs of checking the defaults again
    try:
        return Thresholds.from_dict(run["alert_thresholds"])
    except ValueError as exc:
        # A bad override must not silence every rule: fall back to the defaults, loudly.
        log.error("user %s: invalid alert thresholds (%s); using the defaults", user_id, exc)
        return Thresholds()


async def _store(
    conn: asyncpg.Connection, results: list[tuple[asyncpg.Record, Analysis | None, date]]
) -> dict[int, list[int]]:
    """Every result of a round, a statement per kind of row; returns each user's new alert ids."""
    done = [(run, result, first_day) for run, result, first_day in results if result is not None]
    # Days before the window did not change, except through rolling averages, which only look back.
    await stored.upsert_daily_stats_many(
        conn,
        [(run["user_id"], *row) for run, result, first_day in done for row in result.daily.rows_since(first_day)],
    )
    await stored.replace_correlations_many(
        conn,
        [run["user_id"] for run, _, _ in done],
        [
            (
                run["user_id"],
                c.a,
                c.b,
                c.lag_days,
                c.n,
                c.spearman,
                c.pearson,
                c.p,
                c.q,
                c.ci[0],
                c.ci[1],
                c.describe(),
                result.day,
            )  # fmt: skip
            for run, result, _ in done
            for c in result.correlations
        ],
    )
    await db_scores.upsert_many(
        conn,
        [
            (run["user_id"], score.day, score.domain, score.value, score.contributors)
            for run, result, _ in done
            for score in result.scores.values()
            if score.value is not None
        ],
    )
    await stored.upsert_cgm_summaries(
        conn,
        [(run["user_id"], result.day, CGM_DAYS, result.cgm.as_dict()) for run, result, _ in done if result.cgm],
    )
    await events.publish_many(
        conn,
        [(run["tenant_id"], events.SCORE_UPDATED, data) for run, result, _ in done if (data := _scores(run, result))],
    )
    found = [to_alert(finding, run["user_id"]) for run, result, _ in done for finding in result.findings]
    new_ids: dict[int, list[int]] = {run["user_id"]: [] for run, _, _ in results}
    for alert, alert_id in zip(found, await alerts.insert_many(conn, found), strict=True):
        if alert_id is not None:
            new_ids[alert.user_id].append(alert_id)
    return new_ids


def _scores(run: asyncpg.Record, result: Analysis) -> dict[str, Any] | None:
    """``score.updated`` for integrators: the day's score per domain, nothing beneath them."""
    scores = {domain: s.value for domain, s in result.scores.items() if s.value is not None}
    if not scores:
        return None
    return {"user_id": run["user_id"], "sync_run_id": run["id"], "day": result.day.isoformat(), "scores": scores}
