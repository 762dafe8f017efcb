"""The analytics actor on real Postgres, Redis and a Dramatiq worker: a simulator patient with
a fever, a hypoglycaemia event and an HRV drop gets exactly those alerts, once each; runs
waiting for analysis go in one batch, and a run another transaction holds is left to it."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import dramatiq

from db import sync_runs
from db.sealing import Keyring
from pipeline import runtime
from pipeline.analytics import analyse_run, analyse_runs, analyse_waiting
from pipeline.reconciler import reconcile
from pipeline.settings import PipelineSettings
from pipeline.sync import run_sync
from pipeline.triggers import request_sync
from tests.helpers import eventually, make_patient

TACHYCARDIA = {"metric": "resting_heart_rate", "value": 118, "days_ago": 0}


async def test_a_fever_a_hypo_and_an_hrv_drop_raise_exactly_those_alerts_once_even_when_analysed_twice(
    pool: asyncpg.Pool, worker: dramatiq.Worker, workdir: Path
) -> None:
    _, user_id, connection_id, _ = await make_patient(
        pool, runtime.current().keyring, tenant="scenarios", alert_file=workdir / "alerts.jsonl"
    )
    await pool.execute(
        "UPDATE connections SET settings = $2 WHERE id = $1",
        connection_id,
        # Steady ordinary days: what the scenarios inject is all there is to find, on any date.
        {"seed": "scenarios", "scenarios": ["fever", "hypoglycaemia", "hrv_drop"], "steady": True},
    )
    run_id = await request_sync(pool, connection_id, "manual")

    async def analysed() -> bool:
        return bool(await pool.fetchval("SELECT analysed_at IS NOT NULL FROM sync_runs WHERE id = $1", run_id))

    await eventually(analysed, what="analytics")
    again = await analyse_run(pool, run_id)

    alerts = await pool.fetch(
        "SELECT rule, kind, metric, severity, rule_version, threshold FROM alerts WHERE user_id = $1 ORDER BY rule",
        user_id,
    )
    assert [(a["rule"], a["kind"], a["metric"], a["severity"]) for a in alerts] == [
        ("cgm-hypo-l2", "clinical", "glucose", "critical"),
        ("fever", "clinical", "body_temperature", "warning"),
        ("modified-z", "statistical", "hrv_rmssd", "info"),
    ]
    assert all(a["rule_version"] >= 1 and a["threshold"] is not None for a in alerts)
    assert again is not None and again.new_alert_ids == ()

    stored = await pool.fetchrow(
        "SELECT (SELECT count(DISTINCT metric) FROM daily_stats WHERE user_id = $1) AS metrics,"
        " (SELECT count(*) FROM correlations WHERE user_id = $1) AS correlations,"
        " (SELECT metrics FROM cgm_summaries WHERE user_id = $1) AS cgm,"
        " (SELECT array_agg(domain ORDER BY domain) FROM health_scores WHERE user_id = $1) AS domains",
        user_id,
    )
    assert stored["metrics"] == 9  # eight daily metrics and glucose
    assert again.analysis is not None
    assert stored["correlations"] == len(again.analysis.correlations)
    assert all(c.q <= 0.05 for c in again.analysis.correlations)
    assert stored["cgm"]["hypo_l2_events"] == 1 and stored["cgm"]["sufficient"] is True
    assert set(stored["domains"]) >= {"sleep", "activity", "cardio", "recovery", "glycemic", "overall"}


STORED = {
    "daily_stats": "SELECT metric, day, avg, min, max, count, avg_7d, avg_30d FROM daily_stats WHERE user_id = $1"
    " ORDER BY metric, day",
    "correlations": "SELECT metric_a, metric_b, lag_days, n, spearman, pearson, p_value, q_value, ci_low, ci_high,"
    " description, period_end FROM correlations WHERE user_id = $1 ORDER BY metric_a, metric_b, lag_days",
    "health_scores": "SELECT day, domain, score, contributors FROM health_scores WHERE user_id = $1"
    " ORDER BY day, domain",
    "cgm_summaries": "SELECT period_end, days, metrics FROM cgm_summaries WHERE user_id = $1 ORDER BY period_end",
}


async def _stored(pool: asyncpg.Pool, user_id: int) -> dict[str, list[tuple[object, ...]]]:
    return {table: [tuple(r) for r in await pool.fetch(query, user_id)] for table, query in STORED.items()}


async def test_a_batch_of_runs_stores_what_one_run_at_a_time_stores(
    pool: asyncpg.Pool, worker: dramatiq.Worker, workdir: Path
) -> None:
    runs: dict[int, int] = {}
    for tenant, scenarios in (("batch-a", ["fever", "hypoglycaemia"]), ("batch-b", ["hrv_drop"])):
        _, user_id, connection_id, _ = await make_patient(
            pool, runtime.current().keyring, tenant=tenant, alert_file=workdir / f"{tenant}.jsonl"
        )
        await pool.execute(
            "UPDATE connections SET settings = $2 WHERE id = $1",
            connection_id,
            {"seed": tenant, "scenarios": scenarios},
        )
        runs[user_id] = await request_sync(pool, connection_id, "manual")

    async def analysed() -> bool:
        return bool(await pool.fetchval("SELECT bool_and(analysed_at IS NOT NULL) FROM sync_runs WHERE id = ANY($1)",
                                        list(runs.values())))  # fmt: skip

    await eventually(analysed, what="analytics")  # one message, one run each: the actor's path
    one_at_a_time = {user_id: await _stored(pool, user_id) for user_id in runs}
    for table in STORED:
        await pool.execute(f"DELETE FROM {table} WHERE user_id = ANY($1)", list(runs))

    (a, run_a), (b, run_b) = runs.items()
    outcomes = await analyse_runs(pool, [run_a, run_b, run_a, 0])

    assert {user_id: await _stored(pool, user_id) for user_id in runs} == one_at_a_time
    # The fever and hypo patient has rows of each kind but correlations (none significant in a few days).
    assert {t for t in STORED if one_at_a_time[a][t]} == set(STORED) - {"correlations"}
    assert [(o.run_id, o.user_id) if o else None for o in outcomes] == [(run_a, a), (run_b, b), (run_a, a), None]
    assert all(o.new_alert_ids == () for o in outcomes if o)  # the alerts exist already: none twice
    first, _, again = outcomes[:3]
    assert first and first.analysis and again and again.analysis
    assert first.analysis.as_json() == again.analysis.as_json()


async def test_the_reconciler_hands_lost_analyses_to_the_worker_in_batches(
    pool: asyncpg.Pool, worker: dramatiq.Worker, workdir: Path
) -> None:
    run_ids = []
    for i in range(3):
        _, _, connection_id, _ = await make_patient(
            pool, runtime.current().keyring, tenant=f"lost{i}", alert_file=workdir / "lost.jsonl"
        )
        run_ids.append(await request_sync(pool, connection_id, "manual"))

    async def analysed() -> bool:
        return bool(
            await pool.fetchval("SELECT bool_and(analysed_at IS NOT NULL) FROM sync_runs WHERE id = ANY($1)", run_ids)
        )

    await eventually(analysed, what="analytics")
    # As if the analytics messages were lost: finished long ago, never analysed.
    settings = runtime.current().settings
    await pool.execute(
        "UPDATE sync_runs SET analysed_at = NULL, finished_at = finished_at - 2 * $2::interval WHERE id = ANY($1)",
        run_ids,
        settings.reconcile_after,
    )

    found = await reconcile(pool, settings)

    assert found.analyses >= len(run_ids)
    await eventually(analysed, what="the reconciler's batch")


async def test_a_weight_gain_raises_both_weight_alerts_and_bad_values_and_missing_days_lose_nothing_else(
    pool: asyncpg.Pool, worker: dramatiq.Worker, workdir: Path
) -> None:
    _, user_id, connection_id, _ = await make_patient(
        pool, runtime.current().keyring, tenant="more-scenarios", alert_file=workdir / "alerts.jsonl"
    )
    await pool.execute(
        "UPDATE connections SET settings = $2 WHERE id = $1",
        connection_id,
        {"seed": "more-scenarios", "scenarios": ["weight_gain", "missing_days", "bad_values"]},
    )
    run_id = await request_sync(pool, connection_id, "manual")

    async def analysed() -> bool:
        return bool(await pool.fetchval("SELECT analysed_at IS NOT NULL FROM sync_runs WHERE id = $1", run_id))

    await eventually(analysed, what="analytics")
    run = await pool.fetchrow("SELECT status, rows_received, rows_invalid FROM sync_runs WHERE id = $1", run_id)
    # 30 days of a 31-day window (the first sync reads 30 days back) less 3 missing: 8 daily
    # metrics and a weight a day, plus today's 3 impossible readings.
    days = await pool.fetchval(
        "SELECT count(DISTINCT recorded_at::date) FROM metrics WHERE user_id = $1 AND metric = 'weight'", user_id
    )
    assert run["status"] == "completed" and run["rows_invalid"] == 3
    assert await pool.fetchval("SELECT count(*) FROM metrics WHERE user_id = $1", user_id) == days * 9
    # The missing days count back from the latest summary, as the simulator's days do.
    gaps = await pool.fetchval(
        "WITH latest AS (SELECT max(recorded_at)::date AS day FROM metrics WHERE user_id = $1 AND metric = 'weight')"
        " SELECT count(*) FROM latest, generate_series(latest.day - 4, latest.day - 2, '1 day') d"
        " WHERE EXISTS (SELECT FROM metrics WHERE user_id = $1 AND recorded_at::date = d)",
        user_id,
    )
    assert gaps == 0
    rules = await pool.fetch("SELECT rule, severity FROM alerts WHERE user_id = $1 AND metric = 'weight'", user_id)
    assert sorted(r["rule"] for r in rules) == ["weight-gain-day", "weight-gain-week"]


async def test_an_analysis_takes_the_waiting_runs_along_and_skips_those_held_elsewhere(
    fresh_pool: asyncpg.Pool, keyring: Keyring, workdir: Path
) -> None:
    pool, run_ids = fresh_pool, []
    for tenant in ("wait-a", "wait-b", "wait-c", "wait-d"):
        _, _, connection_id, _ = await make_patient(
            pool, keyring, tenant=tenant, alert_file=workdir / "a", anomalies=[TACHYCARDIA]
        )
        async with pool.acquire() as conn:
            run_ids.append(await sync_runs.create(conn, connection_id, "manual"))
        assert await run_sync(pool, keyring, PipelineSettings(redis_url=None), run_ids[-1]) is not None
    a, b, c, d = run_ids

    pair = await analyse_waiting(pool, [b], limit=2)  # its own run first, then the oldest waiting
    async with pool.acquire() as holder, holder.transaction():
        assert await sync_runs.lock_unanalysed(holder, [d], limit=1) == [d]
        rest = await analyse_waiting(pool, [c, d], limit=100)
        held = await analyse_waiting(pool, [d], limit=100)
    after = await analyse_waiting(pool, [d], limit=100)
    again = await analyse_waiting(pool, [a, b], limit=100)

    assert [o.run_id for o in pair] == [b, a]
    assert [o.run_id for o in rest] == [c]  # d is held by the other transaction
    assert held == [] and again == []  # held elsewhere; analysed already
    assert [o.run_id for o in after] == [d]
    alert_ids = [i for o in (*pair, *rest, *after) for i in o.new_alert_ids]
    assert len(alert_ids) == len(set(alert_ids)) == await pool.fetchval("SELECT count(*) FROM alerts")
    assert all(o.new_alert_ids for o in (*pair, *rest, *after))  # a tachycardia each
    assert await pool.fetchval("SELECT count(*) FROM sync_runs WHERE analysed_at IS NULL") == 0


async def test_a_batch_of_runs_with_no_readings_is_analysed_and_raises_nothing(
    fresh_pool: asyncpg.Pool, keyring: Keyring, workdir: Path
) -> None:
    pool, run_ids = fresh_pool, []
    for tenant in ("empty-a", "empty-b"):
        _, _, connection_id, _ = await make_patient(pool, keyring, tenant=tenant, alert_file=workdir / "a")
        # A sync that found nothing: completed, with its window, and no reading stored.
        run_ids.append(
            await pool.fetchval(
                "INSERT INTO sync_runs (connection_id, trigger, status, window_start, window_end, started_at,"
                " finished_at) VALUES ($1, 'manual', 'completed', now() - interval '1 day', now(), now(), now())"
                " RETURNING id",
                connection_id,
            )
        )

    outcomes = await analyse_waiting(pool, run_ids, limit=100)

    assert [(o.run_id, o.new_alert_ids, o.analysis) for o in outcomes] == [(r, (), None) for r in run_ids]
    assert await pool.fetchval("SELECT count(*) FROM sync_runs WHERE analysed_at IS NULL") == 0
