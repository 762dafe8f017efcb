"""Health data reads: readings by page (raw and daily), scores, correlations, alerts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
from aiohttp.test_utils import TestClient

from db import metrics
from db.metrics import Reading
from tests.bot.api.conftest import Tenant, make_user

T0 = datetime(2025, 3, 1, 7, tzinfo=UTC)


async def _readings(pool: asyncpg.Pool, user_id: int, days: int = 5) -> None:
    batch = [Reading("steps", T0 + timedelta(days=d), 1000.0 + d, "count") for d in range(days)]
    batch += [Reading("resting_heart_rate", T0 + timedelta(days=d), 60.0, "bpm") for d in range(days)]
    async with pool.acquire() as conn:
        await metrics.upsert(conn, user_id, "simulator", None, batch)


async def _all_pages(api: TestClient, tenant: Tenant, url: str) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    cursor = None
    while True:
        page = await (await api.get(url + (f"&cursor={cursor}" if cursor else ""), headers=tenant.auth("read"))).json()
        found += page["data"]
        cursor = page["next_cursor"]
        if cursor is None:
            return found


async def test_raw_readings_page_in_time_order_and_filter_by_metric_and_range(
    api: TestClient, clinic: Tenant, pool: asyncpg.Pool
) -> None:
    user_id = await make_user(api, clinic)
    await _readings(pool, user_id)
    everything = await _all_pages(api, clinic, f"/v1/users/{user_id}/metrics?limit=3")
    assert len(everything) == 10
    assert [r["recorded_at"] for r in everything] == sorted(r["recorded_at"] for r in everything)  # type: ignore[type-var]

    steps = await _all_pages(
        api, clinic, f"/v1/users/{user_id}/metrics?metric=steps&from=2025-03-02&to=2025-03-04T07:00:00%2B00:00&limit=1"
    )
    assert [r["value"] for r in steps] == [1001.0, 1002.0]


async def test_daily_resolution_reads_daily_stats_by_page(api: TestClient, clinic: Tenant, pool: asyncpg.Pool) -> None:
    user_id = await make_user(api, clinic)
    for d in range(4):
        await pool.execute(
            "INSERT INTO daily_stats VALUES ($1, 'steps', $2, 5, 1, 9, 3, 5, 5)", user_id, T0.date() + timedelta(days=d)
        )
    days = await _all_pages(api, clinic, f"/v1/users/{user_id}/metrics?resolution=day&limit=3")
    assert [d["day"] for d in days] == [(T0.date() + timedelta(days=d)).isoformat() for d in range(4)]
    assert days[0]["avg"] == 5 and days[0]["count"] == 3


async def test_bad_query_parameters_are_422_naming_the_parameter(api: TestClient, clinic: Tenant) -> None:
    user_id = await make_user(api, clinic)
    for query, parameter in [
        ("metric=mood", "metric"),
        ("from=yesterday", "from"),
        ("from=2025-01-01T00:00:00", "from"),
        ("from=2025-02-01&to=2025-01-01", "to"),
        ("resolution=hour", "resolution"),
        ("limit=5000", "limit"),
        ("cursor=abc", "cursor"),
        ("metric=%00", "metric"),
    ]:
        response = await api.get(f"/v1/users/{user_id}/metrics?{query}", headers=clinic.auth("read"))
        assert response.status == 422, query
        assert (await response.json())["error"]["details"] == {"parameter": parameter}
    # A raw cursor is refused by the daily resolution, not misread.
    cursor = "WyIyMDI1LTAxLTAxVDAwOjAwOjAwKzAwOjAwIiwic3RlcHMiLCJzIl0"
    day = await api.get(f"/v1/users/{user_id}/metrics?resolution=day&cursor={cursor}", headers=clinic.auth())
    assert day.status == 422


async def test_scores_give_the_latest_day_per_domain_or_a_range(
    api: TestClient, clinic: Tenant, pool: asyncpg.Pool
) -> None:
    user_id = await make_user(api, clinic)
    for d, domain, score in [(0, "sleep", 70), (1, "sleep", 80), (0, "recovery", 60)]:
        await pool.execute(
            "INSERT INTO health_scores (user_id, day, domain, score, contributors) VALUES ($1, $2, $3, $4, '{}')",
            user_id, T0.date() + timedelta(days=d), domain, score,
        )  # fmt: skip
    latest = (await (await api.get(f"/v1/users/{user_id}/scores", headers=clinic.auth("read"))).json())["data"]
    assert {(s["domain"], s["score"]) for s in latest} == {("sleep", 80), ("recovery", 60)}
    ranged = await api.get(f"/v1/users/{user_id}/scores?from=2025-03-01&to=2025-03-02", headers=clinic.auth("read"))
    assert [s["score"] for s in (await ranged.json())["data"]] == [60, 70]
    too_wide = await api.get(f"/v1/users/{user_id}/scores?from=2020-01-01&to=2025-01-01", headers=clinic.auth())
    assert too_wide.status == 422


async def test_correlations_carry_their_plain_words_description(
    api: TestClient, clinic: Tenant, pool: asyncpg.Pool
) -> None:
    user_id = await make_user(api, clinic)
    await pool.execute(
        "INSERT INTO correlations VALUES ($1, 'sleep_duration', 'hrv_rmssd', 1, 41, 0.42, 0.4, 0.001, 0.003, 0.1, 0.6,"
        " 'Higher sleep_duration goes with higher hrv_rmssd the next day', '2025-03-05')",
        user_id,
    )
    found = (await (await api.get(f"/v1/users/{user_id}/correlations", headers=clinic.auth("read"))).json())["data"]
    assert found[0]["description"].startswith("Higher sleep_duration") and found[0]["lag_days"] == 1


async def test_alerts_list_newest_first_filter_by_status_and_page(
    api: TestClient, clinic: Tenant, pool: asyncpg.Pool
) -> None:
    user_id = await make_user(api, clinic)
    for i, status in enumerate(["open", "resolved", "open"]):
        await pool.execute(
            "INSERT INTO alerts (user_id, category, severity, title, body, dedupe_key, status)"
            " VALUES ($1, 'vitals', 'warning', $2, 'b', $3, $4)",
            user_id, f"alert {i}", f"data-{user_id}-{i}", status,
        )  # fmt: skip
    url = f"/v1/users/{user_id}/alerts"
    everything = await _all_pages(api, clinic, url + "?limit=1")
    assert [a["title"] for a in everything] == ["alert 2", "alert 1", "alert 0"]
    open_ = (await (await api.get(url + "?status=open", headers=clinic.auth("read"))).json())["data"]
    assert [a["title"] for a in open_] == ["alert 2", "alert 0"]
    assert (await api.get(url + "?status=closed", headers=clinic.auth("read"))).status == 422


async def test_every_data_route_is_404_for_another_tenant(api: TestClient, clinic: Tenant, other: Tenant) -> None:
    user_id = await make_user(api, clinic)
    for what in ("metrics", "scores", "correlations", "alerts"):
        assert (await api.get(f"/v1/users/{user_id}/{what}", headers=other.auth("read"))).status == 404
        assert (await api.get(f"/v1/users/{user_id}/{what}", headers=clinic.auth("read"))).status == 200
