"""Analytics: each user's recent readings as arrays, and the results (daily stats, correlations,
CGM summaries), replaced idempotently."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import asyncpg
import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class ReadingArrays:
    """One user's readings as parallel arrays: ``names`` are the metrics, sorted and unique;
    per reading, ``metric`` indexes into them, ``seconds`` is ``recorded_at.timestamp()`` and
    ``values`` the value.  Each metric's readings are in ``db.metrics.latest``'s order: by
    time, then provider."""

    names: tuple[str, ...]
    metric: npt.NDArray[np.intp]
    seconds: npt.NDArray[np.float64]
    values: npt.NDArray[np.float64]


# One row per (user, metric, provider), each group's numbers as one bytea of big-endian int8s or
# float8s: asyncpg would make a Python float of every float8[] element (~0.5 ms a user of 2,700
# readings), while a bytea is one object that numpy reads as it is.  Each user is its own index
# scan and a small in-memory aggregate (LATERAL), with no ORDER BY: grouping or sorting the whole
# batch's readings spilled to disk past work_mem and cost the server more than the scans.
# provider_rank is the providers' order in the database's collation, which metrics.latest uses.
# Times go as PostgreSQL's own microseconds: date_part cost the server more than the rest of the
# aggregate, and _seconds does its very arithmetic.
_READINGS = """
SELECT w.user_id, a.metric, a.provider_rank, a.micros, a.values
  FROM unnest($1::bigint[], $2::timestamptz[]) AS w(user_id, since)
 CROSS JOIN LATERAL (
       SELECT metric, dense_rank() OVER (ORDER BY provider) AS provider_rank,
              string_agg(timestamptz_send(recorded_at), '') AS micros,
              string_agg(float8send(value), '') AS values
         FROM metrics
        WHERE user_id = w.user_id AND recorded_at >= w.since
        GROUP BY metric, provider) AS a
"""
_FLOAT8, _INT8 = np.dtype(">f8"), np.dtype(">i8")
# PostgreSQL counts microseconds from 2000-01-01 UTC.
_PG_EPOCH_MICROS = 946_684_800_000_000


async def readings(conn: asyncpg.Connection, since: Mapping[int, datetime]) -> dict[int, ReadingArrays]:
    """Each user's readings from its own ``since`` on, in one query.  Every user given is a key;
    one without readings has empty arrays."""
    rows: dict[int, list[asyncpg.Record]] = {user_id: [] for user_id in since}
    for row in await conn.fetch(_READINGS, list(since), list(since.values())):
        rows[row["user_id"]].append(row)
    return {user_id: _arrays(own) for user_id, own in rows.items()}


def _arrays(rows: list[asyncpg.Record]) -> ReadingArrays:
    rows.sort(key=lambda row: (row["metric"], row["provider_rank"]))
    names = tuple(dict.fromkeys(row["metric"] for row in rows))
    index = {name: i for i, name in enumerate(names)}
    sizes = [len(row["values"]) // _FLOAT8.itemsize for row in rows]
    metric = np.repeat(np.array([index[row["metric"]] for row in rows], np.intp), sizes)
    seconds = _seconds(np.frombuffer(b"".join(row["micros"] for row in rows), _INT8).astype(np.int64))
    values = np.frombuffer(b"".join(row["values"] for row in rows), _FLOAT8).astype(np.float64)
    if len(names) == len(rows) and _in_time_order(seconds, sizes):
        # One provider a metric, its readings already in time order (syncs write day by day, so
        # the table mostly holds them so): the sort below would change nothing, ~0.1 ms a user.
        return ReadingArrays(names, metric, seconds, values)
    # Time order within each metric; the stable sort keeps the rows' provider order at equal times.
    order = np.lexsort((seconds, metric))
    return ReadingArrays(names, metric[order], seconds[order], values[order])


def _in_time_order(seconds: npt.NDArray[np.float64], sizes: list[int]) -> bool:
    """Whether each row's readings (``sizes`` of them, one after the other) are in time order."""
    steps = np.diff(seconds)
    steps[np.cumsum(sizes[:-1], dtype=np.intp) - 1] = 0.0  # where one row ends and the next begins
    return bool((steps >= 0).all())


def _seconds(micros: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """POSIX seconds as date_part('epoch', recorded_at) computes them: the whole microseconds
    since 1970 (exact in a float8 until the year 2255) divided by 10⁶, rounded once.  That is
    also what ``datetime.timestamp()`` gives."""
    found: npt.NDArray[np.float64] = (micros + _PG_EPOCH_MICROS).astype(np.float64) / 1e6
    return found


async def upsert_daily_stats(conn: asyncpg.Connection, user_id: int, rows: Sequence[tuple[Any, ...]]) -> None:
    """``rows`` are (metric, day, avg, min, max, count, avg_7d, avg_30d)."""
    await upsert_daily_stats_many(conn, [(user_id, *row) for row in rows])


async def upsert_daily_stats_many(conn: asyncpg.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """``rows`` are (user_id, metric, day, avg, min, max, count, avg_7d, avg_30d), of any users.
    Rows of a user that does not exist (any more) are not written."""
    if not rows:
        return
    columns = list(zip(*rows, strict=True))
    await conn.execute(_UPSERT_DAILY_STATS, *[list(column) for column in columns], sorted(set(columns[0])))


# Daily stats have no foreign key (migration 0020): the per-row check cost more of the server's
# time than the rest of the write.  The statement takes its guarantee once per user instead: it
# locks the users FOR KEY SHARE, as the check did per row, and writes only their rows.  A DELETE
# of one of them then waits for this write to commit and its trigger deletes what was written, or
# it ran first and this finds the user gone.
_UPSERT_DAILY_STATS = """
WITH owners AS MATERIALIZED (SELECT id FROM users WHERE id = ANY($10::bigint[]) FOR KEY SHARE)
INSERT INTO daily_stats (user_id, metric, day, avg, min, max, count, avg_7d, avg_30d)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::date[], $4::float8[], $5::float8[], $6::float8[],
                     $7::int[], $8::float8[], $9::float8[]) AS r(user_id)
 WHERE r.user_id IN (SELECT id FROM owners)
ON CONFLICT (user_id, metric, day) DO UPDATE SET avg = excluded.avg, min = excluded.min, max = excluded.max,
   count = excluded.count, avg_7d = excluded.avg_7d, avg_30d = excluded.avg_30d
"""


async def replace_correlations(
    conn: asyncpg.Connection, user_id: int, period_end: date, rows: Sequence[tuple[Any, ...]]
) -> None:
    """``rows`` are (a, b, lag, n, spearman, pearson, p, q, ci_low, ci_high, description); the old set goes."""
    await replace_correlations_many(conn, [user_id], [(user_id, *row, period_end) for row in rows])


async def replace_correlations_many(
    conn: asyncpg.Connection, user_ids: Sequence[int], rows: Sequence[tuple[Any, ...]]
) -> None:
    """The sets of ``user_ids`` become ``rows``: (user_id, a, b, lag, n, spearman, pearson, p, q,
    ci_low, ci_high, description, period_end)."""
    await conn.execute("DELETE FROM correlations WHERE user_id = ANY($1::bigint[])", list(user_ids))
    if rows:
        columns = list(zip(*rows, strict=True))
        await conn.execute(
            "INSERT INTO correlations (user_id, metric_a, metric_b, lag_days, n, spearman, pearson, p_value,"
            " q_value, ci_low, ci_high, description, period_end)"
            " SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::smallint[], $5::int[],"
            " $6::float8[], $7::float8[], $8::float8[], $9::float8[], $10::float8[], $11::float8[],"
            " $12::text[], $13::date[])",
            *[list(column) for column in columns],
        )


async def upsert_cgm_summary(
    conn: asyncpg.Connection, user_id: int, period_end: date, days: int, metrics: dict[str, Any]
) -> None:
    await conn.execute(
        "INSERT INTO cgm_summaries (user_id, period_end, days, metrics) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (user_id, period_end, days) DO UPDATE SET metrics = excluded.metrics",
        user_id,
        period_end,
        days,
        metrics,
    )


async def upsert_cgm_summaries(conn: asyncpg.Connection, rows: Sequence[tuple[int, date, int, dict[str, Any]]]) -> None:
    """``upsert_cgm_summary`` for many (user_id, period_end, days, metrics), in one statement;
    a key may appear once."""
    if not rows:
        return
    user_ids, ends, days, found = zip(*rows, strict=True)
    await conn.execute(
        "INSERT INTO cgm_summaries (user_id, period_end, days, metrics)"
        " SELECT user_id, period_end, days, metrics::jsonb"
        " FROM unnest($1::bigint[], $2::date[], $3::smallint[], $4::text[]) AS r(user_id, period_end, days, metrics)"
        " ON CONFLICT (user_id, period_end, days) DO UPDATE SET metrics = excluded.metrics",
        list(user_ids),
        list(ends),
        list(days),
        [json.dumps(metrics) for metrics in found],  # as the pool's jsonb codec writes them
    )


async def thresholds(conn: asyncpg.Connection, user_id: int) -> dict[str, Any]:
    found: dict[str, Any] = await conn.fetchval("SELECT alert_thresholds FROM users WHERE id = $1", user_id) or {}
    return found
