"""Sleep and workout sessions through a real sync: stored with real durations, never as value 0."""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import dramatiq
import pytest

from db.metrics import Reading
from db.sessions import Session
from pipeline import runtime
from pipeline.providers import PROVIDERS, Window
from pipeline.providers.simulator import Simulator
from pipeline.triggers import request_sync
from pipeline.vocabulary import session_problem
from tests.helpers import eventually, make_patient

# 30 days of the simulator: a sleep_duration reading and a night each morning, a workout every other day.
FIRST_SYNC = 30 + 30 + 15


class Nightly(Simulator):
    """The simulator's sessions and sleep_duration readings, and whatever a test adds.

    Nothing it serves grows through the day (as today's steps do), so a re-sync must write nothing.
    """

    id = "nightly"

    def __init__(self) -> None:
        self.extra: list[Reading | Session] = []

    async def fetch(
        self, tokens: dict[str, Any], window: Window, settings: dict[str, Any]
    ) -> AsyncIterator[Reading | Session]:
        async for item in super().fetch(tokens, window, settings):
            if isinstance(item, Session) or item.metric == "sleep_duration":
                yield item
        for item in self.extra:
            yield item


@pytest.fixture
def nightly() -> Iterator[Nightly]:
    provider = Nightly()
    PROVIDERS[provider.id] = provider
    yield provider
    del PROVIDERS[provider.id]


async def finished(pool: asyncpg.Pool, run_id: int) -> asyncpg.Record:
    async def check() -> asyncpg.Record | None:
        return await pool.fetchrow(
            "SELECT * FROM sync_runs WHERE id = $1 AND status IN ('completed', 'failed', 'skipped')", run_id
        )

    return await eventually(check, what=f"sync run {run_id}")


async def sessions_of(pool: asyncpg.Pool, user_id: int) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT kind, started_at, ended_at, duration_s, activity, details, xmin::text AS version"
        " FROM sessions WHERE user_id = $1 ORDER BY kind, started_at",
        user_id,
    )


async def test_a_sync_stores_each_night_as_long_as_its_sleep_duration_and_a_resync_writes_nothing(
    pool: asyncpg.Pool, worker: dramatiq.Worker, nightly: Nightly, workdir: Path
) -> None:
    _, user_id, connection_id, _ = await make_patient(
        pool, runtime.current().keyring, tenant="nights", alert_file=workdir / "a.jsonl", provider="nightly"
    )

    first = await finished(pool, await request_sync(pool, connection_id, "manual"))

    assert (first["status"], first["rows_received"], first["rows_written"], first["rows_invalid"]) == (
        "completed",
        FIRST_SYNC,
        FIRST_SYNC,
        0,
    )
    stored = await sessions_of(pool, user_id)
    slept = {
        r["recorded_at"].date(): r["value"]
        for r in await pool.fetch("SELECT recorded_at, value FROM metrics WHERE user_id = $1", user_id)
    }
    nights = [s for s in stored if s["kind"] == "sleep"]
    workouts = [s for s in stored if s["kind"] == "workout"]
    assert (len(slept), len(nights), len(workouts)) == (30, 30, 15)
    for night in nights:
        minutes = slept[night["ended_at"].date()]  # reported with the morning it ends on
        assert night["duration_s"] == minutes * 60 == (night["ended_at"] - night["started_at"]).total_seconds()
        assert sum(night["details"].values()) == minutes
    for workout in workouts:
        assert 20 * 60 <= workout["duration_s"] == (workout["ended_at"] - workout["started_at"]).total_seconds()
        assert workout["activity"] and workout["details"]["energy_kcal"] > 0

    # The daily job re-reads a week: every session and reading in it is a repeat.
    again = await finished(pool, await request_sync(pool, connection_id, "daily"))

    assert again["status"] == "completed" and again["rows_received"] >= 7 + 7 + 3
    assert (again["rows_written"], again["rows_unchanged"]) == (0, again["rows_received"])
    assert await sessions_of(pool, user_id) == stored


async def test_invalid_sessions_are_skipped_counted_and_logged_and_the_valid_ones_kept(
    pool: asyncpg.Pool,
    worker: dramatiq.Worker,
    nightly: Nightly,
    workdir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, user_id, connection_id, _ = await make_patient(
        pool, runtime.current().keyring, tenant="badnights", alert_file=workdir / "a.jsonl", provider="nightly"
    )
    noon = (datetime.now(UTC) - timedelta(days=2)).replace(hour=12, minute=0, second=0, microsecond=0)
    nightly.extra = [
        Session("nap", noon, noon + timedelta(minutes=30)),
        Session("sleep", noon, noon - timedelta(hours=7)),
        Session("workout", noon.replace(tzinfo=None), noon.replace(tzinfo=None) + timedelta(hours=1), "running"),
        Session("workout", noon - timedelta(days=1), noon + timedelta(hours=1), "hiking"),
        Session("sleep", datetime.now(UTC) + timedelta(hours=2), datetime.now(UTC) + timedelta(hours=9)),
        Session("workout", noon, noon + timedelta(minutes=45), "rowing", {"energy_kcal": 350, "distance_m": 9000}),
    ]
    caplog.set_level(logging.WARNING, logger="pipeline.sync")

    run = await finished(pool, await request_sync(pool, connection_id, "manual"))

    assert (run["status"], run["rows_received"], run["rows_invalid"], run["rows_written"]) == (
        "completed",
        FIRST_SYNC + 6,
        5,
        FIRST_SYNC + 1,
    )
    rowing = await pool.fetchrow(
        "SELECT duration_s, details FROM sessions WHERE user_id = $1 AND activity = 'rowing'", user_id
    )
    assert (rowing["duration_s"], rowing["details"]) == (45 * 60, {"energy_kcal": 350, "distance_m": 9000})
    assert await pool.fetchval("SELECT count(*) FROM sessions WHERE user_id = $1", user_id) == 30 + 15 + 1
    skipped = [r.getMessage() for r in caplog.records if "skipped a session" in r.getMessage()]
    assert len(skipped) == 5
    assert any("unknown session kind 'nap'" in m for m in skipped)
    assert any("workout session longer than 24 h" in m for m in skipped)


START, END = datetime(2026, 11, 20, 10, 30, tzinfo=UTC), datetime(2026, 11, 22, 10, 30, tzinfo=UTC)
AT, HOUR = datetime(2026, 11, 20, 23, tzinfo=UTC), timedelta(hours=1)


@pytest.mark.parametrize(
    ("session", "reason"),
    [
        (Session("sleep", AT, AT + 8 * HOUR), None),
        # Providers file sessions by day: one may start, or even end, a little before the window.
        (Session("workout", START - HOUR, START + timedelta(minutes=15), "cycling"), None),
        (Session("sleep", START - 9 * HOUR, START - HOUR), None),
        (Session("meditation", AT, AT + timedelta(minutes=20)), "unknown session kind 'meditation'"),
        (Session("sleep", AT.replace(tzinfo=None), AT + 8 * HOUR), "sleep session timestamp has no time zone"),
        (Session("sleep", AT, AT), "sleep session does not end after it starts"),
        (Session("sleep", AT, AT + timedelta(seconds=0.5)), "sleep session lasts under a second"),
        (Session("sleep", AT - 30 * HOUR, AT), "sleep session longer than 24 h"),
        (Session("workout", END + HOUR, END + 2 * HOUR), "workout session starts in the future"),
        (Session("workout", END - timedelta(minutes=5), END + HOUR), "workout session has not ended yet"),
        (Session("sleep", AT - timedelta(days=5), AT - timedelta(days=5) + 7 * HOUR),
         "sleep session ended before the sync window"),
        (Session("sleep", AT, AT + 8 * HOUR, None, {"hypnogram": 1}), "unknown sleep detail 'hypnogram'"),
        (Session("workout", AT, AT + HOUR, None, {"energy_kcal": math.inf}),
         "workout session detail is not a finite number"),
    ],
)  # fmt: skip
def test_a_session_is_stored_only_when_it_is_a_known_believable_interval(session: Session, reason: str | None) -> None:
    assert session_problem(session, START, END) == reason
