"""What the drills check and count: progress of the runs, and alerts delivered exactly once.

Each drill ends by printing one ``counted`` line (readings expected and stored, alerts,
deliveries, lost), which pytest shows with ``-s`` or when the drill fails.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import asyncpg

from tests.helpers import eventually
from tests.resilience.conftest import Drill, Patient, served


@dataclass(frozen=True)
class Progress:
    runs: int
    runs_done: int
    alerts: int
    alerts_routed: int

    def finished(self, runs: int, min_alerts: int) -> bool:
        return self.runs == self.runs_done == runs and self.alerts_routed == self.alerts >= min_alerts


async def progress(pool: asyncpg.Pool) -> Progress:
    row = await pool.fetchrow(
        "SELECT (SELECT count(*) FROM sync_runs) AS runs,"
        " (SELECT count(*) FROM sync_runs WHERE status = 'completed' AND analysed_at IS NOT NULL) AS runs_done,"
        " (SELECT count(*) FROM alerts) AS alerts,"
        " (SELECT count(*) FROM alerts WHERE routed_at IS NOT NULL) AS alerts_routed"
    )
    return Progress(**dict(row))


async def settled(drill: Drill, runs: int, min_alerts: int, timeout: float) -> Progress:
    """Wait until every run is completed and analysed and every alert routed."""

    async def check() -> Progress | None:
        found = await progress(drill.pool)
        return found if found.finished(runs, min_alerts) else None

    try:
        settled_at: Progress = await eventually(check, timeout=timeout, what="every run, analysis and alert to finish")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last seen {await progress(drill.pool)}") from None
    return settled_at


COOLED = "delivered, or suppressed by its cooldown"


async def assert_delivered_once_each(drill: Drill, users: list[Patient]) -> int:
    """Every alert routed; each one the rule selects (warning and up) decided by exactly one
    attempt, and each delivered one written once to the sink; the others (info) sent nowhere.
    Returns how many were delivered.

    A patient may raise two warnings on one metric at once (over 100 bpm, and 4+ bpm above their
    baseline): the rule's cooldown then sends the first one routed and suppresses the other, so
    "decided" is delivered, or suppressed for an alert of the same patient and metric that was
    delivered.  (Routed at the same moment by two workers, one claims the cooldown and sends; the
    other decides again and is suppressed.)
    """
    user_ids = [p.user_id for p in users]
    alerts = {
        a["id"]: a
        for a in await drill.pool.fetch(
            "SELECT id, user_id, metric, severity, routed_at FROM alerts WHERE user_id = ANY($1)", user_ids
        )
    }
    selected = sorted(a_id for a_id, a in alerts.items() if a["severity"] != "info")
    assert {alerts[a_id]["user_id"] for a_id in selected} == set(user_ids), "a tachycardia raised no alert"
    assert [a_id for a_id, a in alerts.items() if a["routed_at"] is None] == []
    logs = await drill.pool.fetch(
        "SELECT alert_id, attempt, status, detail FROM notification_logs WHERE alert_id = ANY($1) ORDER BY alert_id",
        list(alerts),
    )
    delivered = sorted(r["alert_id"] for r in logs if r["status"] == "delivered")

    def decided(row: asyncpg.Record) -> tuple[int, int, str]:
        cause = re.fullmatch(r"cooldown: alert (\d+) went out .*", row["detail"] or "")
        if row["status"] == "suppressed" and cause and int(cause[1]) in delivered:
            first, alert = alerts[int(cause[1])], alerts[row["alert_id"]]
            if (first["user_id"], first["metric"]) == (alert["user_id"], alert["metric"]):
                return row["alert_id"], row["attempt"], COOLED
        if row["status"] == "delivered":
            return row["alert_id"], row["attempt"], COOLED
        return row["alert_id"], row["attempt"], row["status"]

    assert [decided(r) for r in logs] == [(a_id, 1, COOLED) for a_id in selected]
    lines = [json.loads(line)["alert_id"] for line in drill.alert_file.read_text().splitlines()]
    assert sorted(lines) == delivered
    return len(delivered)


def counted(drill: str, **counts: object) -> str:
    """Print and return one line of what a drill counted, in the order given."""
    line = f"{drill}: " + ", ".join(f"{name.replace('_', ' ')} {value}" for name, value in counts.items())
    print(line)
    return line


@dataclass(frozen=True)
class Compared:
    """Readings and sessions the simulator served for each run's window, against those stored.

    ``wrong`` maps a user to (missing, differing) counts; it is empty when every row served is
    stored exactly as served, and nothing else is.
    """

    expected: int
    stored: int
    wrong: dict[int, tuple[int, int]]


async def compare_stored(drill: Drill, users: list[Patient]) -> Compared:
    """Compare each user's stored rows with what the simulator serves for their one run's window."""
    runs = {r["connection_id"]: r for r in await drill.pool.fetch("SELECT * FROM sync_runs")}
    expected_total = stored_total = 0
    wrong: dict[int, tuple[int, int]] = {}
    for patient in users:
        run = runs[patient.connection_id]
        expected = await served(patient.settings, run["window_start"], run["window_end"])
        stored = await drill.stored(patient.user_id)
        expected_total += expected.items
        stored_total += stored.items
        if stored != expected:
            missing = (expected.readings.keys() - stored.readings.keys()) | (
                expected.sessions.keys() - stored.sessions.keys()
            )
            extra = (stored.readings.keys() - expected.readings.keys()) | (
                stored.sessions.keys() - expected.sessions.keys()
            )
            differing = {k for k, v in stored.readings.items() if k in expected.readings and expected.readings[k] != v}
            differing |= {k for k, v in stored.sessions.items() if k in expected.sessions and expected.sessions[k] != v}
            wrong[patient.user_id] = (len(missing), len(differing | extra))
    return Compared(expected_total, stored_total, wrong)
