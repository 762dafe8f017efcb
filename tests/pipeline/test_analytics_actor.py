"""The analytics actor on real Postgres, Redis and a Dramatiq worker: a simulator patient with
a fever, a hypoglycaemia event and an HRV drop gets exactly those alerts, once each."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import dramatiq

from pipeline import runtime
from pipeline.analytics import analyse_run
from pipeline.triggers import request_sync
from tests.helpers import eventually, make_patient


async def test_a_fever_a_hypo_and_an_hrv_drop_raise_exactly_those_alerts_once_even_when_analysed_twice(
    pool: asyncpg.Pool, worker: dramatiq.Worker, workdir: Path
) -> None:
    _, user_id, connection_id, _ = await make_patient(
        pool, runtime.current().keyring, tenant="scenarios", alert_file=workdir / "alerts.jsonl"
    )
    await pool.execute(
        "UPDATE connections SET settings = $2 WHERE id = $1",
        connection_id,
        {"seed": "scenarios", "scenarios": ["fever", "hypoglycaemia", "hrv_drop"]},
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
