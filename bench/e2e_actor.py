"""The end-to-end bench's ceiling: the pipeline's chain with a trivial scorer in place of analytics.

``dramatiq pipeline.worker bench.e2e_actor --queues …`` loads these beside the real actors.  They
are declared on ``runtime.DECLARED`` and bound to the broker like the pipeline's own, so they go
through the same Redis, worker processes, queues, pools and database:

* ``ceiling_sync`` (queue ``sync``) runs the real ``pipeline.sync.run_sync``, then hands over to
  ``ceiling_analyse`` instead of ``analyse``;
* ``ceiling_analyse`` (queue ``analytics``) makes ``analyse_run``'s database round trips: the run
  row, the user's 90 days (``db.metrics.latest``), then in one transaction the daily stats of the
  window, the correlations (replaced by none), one score per domain, ``score.updated``, one alert
  per anomalous reading and ``mark_analysed``; then the real ``notify`` and ``dispatch_pending``.

What it leaves out is the maths: no aggregates, correlations, score formulas or detectors.  Its
"detector" flags today's readings above a fixed line, which the bench's injected anomaly crosses.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import dramatiq

from db import alerts, events, metrics, sync_runs
from db import analytics as stored
from db import scores as db_scores
from db.alerts import NewAlert
from pipeline import runtime
from pipeline.actors import dispatch_pending, notify
from pipeline.analytics.analysis import CORRELATION_DAYS
from pipeline.sync import run_sync

# The domains a user of the simulator's daily metrics gets a score in (no CGM: no glycemic).
DOMAINS = ("sleep", "activity", "cardio", "recovery", "overall")
# The trivial detector: a reading at or above its line is an alert.
LINES = {"resting_heart_rate": 100.0, "body_temperature": 38.0}


@dramatiq.actor(broker=runtime.DECLARED, queue_name="sync", max_retries=0)
async def ceiling_sync(run_id: int) -> None:
    rt = runtime.current()
    outcome = await run_sync(await runtime.pool(), rt.keyring, rt.settings, run_id)
    if outcome is not None and outcome.status == "completed":
        ceiling_analyse.send(run_id)


@dramatiq.actor(broker=runtime.DECLARED, queue_name="analytics", max_retries=0)
async def ceiling_analyse(run_id: int) -> None:
    pool = await runtime.pool()
    async with pool.acquire() as conn:
        run = await conn.fetchrow(
            "SELECT r.window_start, r.window_end, c.user_id, u.tenant_id, u.timezone, u.alert_thresholds"
            " FROM sync_runs r JOIN connections c ON c.id = r.connection_id JOIN users u ON u.id = c.user_id"
            " WHERE r.id = $1",
            run_id,
        )
        if run is None or run["window_start"] is None:
            return
        user_id = run["user_id"]
        readings = await metrics.latest(conn, user_id, run["window_end"] - timedelta(days=CORRELATION_DAYS + 1))
    # The bench's users live in UTC: a reading's day is its UTC date.
    window = [r for r in readings if r.recorded_at >= run["window_start"]]
    day = run["window_end"].astimezone(UTC).date()
    new_ids = []
    async with pool.acquire() as conn, conn.transaction():
        await stored.upsert_daily_stats(
            conn,
            user_id,
            [(r.metric, r.recorded_at.date(), r.value, r.value, r.value, 1, r.value, r.value) for r in window],
        )
        await stored.replace_correlations(conn, user_id, day, [])
        for domain in DOMAINS:
            await db_scores.upsert(conn, user_id, day, domain, 50.0, {})
        await events.publish(
            conn,
            run["tenant_id"],
            events.SCORE_UPDATED,
            {"user_id": user_id, "sync_run_id": run_id, "day": day.isoformat(), "scores": dict.fromkeys(DOMAINS, 50)},
        )
        for r in window:
            line = LINES.get(r.metric)
            if line is None or r.value < line:
                continue
            alert_id = await alerts.insert(
                conn,
                NewAlert(
                    user_id=user_id,
                    category="clinical",
                    severity="warning",
                    metric=r.metric,
                    title=f"{r.metric} high",
                    body=f"{r.metric} {r.value:g} is at or above {line:g} (ceiling rule)",
                    observed_value=r.value,
                    threshold=line,
                    recorded_at=datetime.combine(r.recorded_at.date(), time(0), tzinfo=UTC),
                    dedupe_key=f"ceiling:{user_id}:{r.metric}:{r.recorded_at.date().isoformat()}",
                    rule="ceiling",
                    rule_version=1,
                ),
            )
            if alert_id is not None:
                new_ids.append(alert_id)
        await sync_runs.mark_analysed(conn, run_id)
    for alert_id in new_ids:
        notify.send(alert_id)
    await dispatch_pending(pool)


runtime.bind_actors()
