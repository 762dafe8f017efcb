"""POST /v1/ingest: mixed batches, replays, signatures, limits."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from channels.signing import sign
from pipeline import runtime
from tests.bot.api.conftest import Tenant, error_of, make_user

NOW = datetime.now(UTC).replace(microsecond=0)


def reading(metric: str = "steps", value: Any = 1200, unit: str = "count", hours_ago: float = 1) -> dict[str, Any]:
    return {
        "metric": metric,
        "recorded_at": (NOW - timedelta(hours=hours_ago)).isoformat(),
        "value": value,
        "unit": unit,
    }


MIXED = [
    reading(hours_ago=1),                                   # 0 valid
    reading("spo2", 150, "%"),                              # 1 implausible
    reading("mood", 3, "score"),                            # 2 unknown metric
    reading("resting_heart_rate", 58, "bpm", hours_ago=2),  # 3 valid
    reading("steps", 10, "steps"),                          # 4 wrong unit
    {"metric": "steps", "recorded_at": "2025-01-01T00:00:00", "value": 1, "unit": "count"},  # 5 no zone
    reading(hours_ago=24 * 500),                            # 6 too old
    reading(hours_ago=-1),                                  # 7 future
    reading(value="12"),                                    # 8 not a number
    reading(value=True),                                    # 9 a bool is not a number
    "steps=12",                                             # 10 not an object
    reading("hrv_rmssd", 41.5, "ms", hours_ago=3),          # 11 valid
]  # fmt: skip


async def _stored(pool: asyncpg.Pool, user_id: int) -> list[tuple[str, float]]:
    rows = await pool.fetch(
        "SELECT metric, value FROM metrics WHERE user_id = $1 AND provider = 'ingest' ORDER BY metric", user_id
    )
    return [(r["metric"], r["value"]) for r in rows]


async def test_a_mixed_batch_stores_exactly_the_valid_readings_and_reports_the_rest(
    api: TestClient, clinic: Tenant, pool: asyncpg.Pool
) -> None:
    user_id = await make_user(api, clinic)
    response = await api.post("/v1/ingest", json={"user_id": user_id, "readings": MIXED}, headers=clinic.auth("write"))

    assert response.status == 200
    result = await response.json()
    assert [i["index"] for i in result["invalid"]] == [1, 2, 4, 5, 6, 7, 8, 9, 10]
    reasons = {i["index"]: i["reason"] for i in result["invalid"]}
    assert "plausible range" in reasons[1] and "unknown metric" in reasons[2] and "no time zone" in reasons[5]
    assert "400 days" in reasons[6] and "400 days" in reasons[7] and "finite number" in reasons[8]
    assert (result["received"], result["accepted"], result["written"]) == (12, 3, 3)
    assert await _stored(pool, user_id) == [("hrv_rmssd", 41.5), ("resting_heart_rate", 58), ("steps", 1200)]
    run = await pool.fetchrow("SELECT * FROM sync_runs WHERE id = $1", result["sync_run_id"])
    assert (run["trigger"], run["status"], run["rows_received"], run["rows_written"], run["rows_invalid"]) == (
        "ingest", "completed", 12, 3, 9,
    )  # fmt: skip
    assert run["window_start"] < run["window_end"]
    connection = await pool.fetchrow("SELECT provider, status FROM connections WHERE id = $1", run["connection_id"])
    assert (connection["provider"], connection["status"]) == ("ingest", "inactive")


async def test_a_replayed_batch_adds_and_changes_nothing(api: TestClient, clinic: Tenant, pool: asyncpg.Pool) -> None:
    user_id = await make_user(api, clinic)
    body = {"user_id": user_id, "readings": MIXED}
    await api.post("/v1/ingest", json=body, headers=clinic.auth("write"))
    before = await pool.fetch("SELECT *, xmin::text FROM metrics WHERE user_id = $1 ORDER BY metric", user_id)

    replay = await (await api.post("/v1/ingest", json=body, headers=clinic.auth("write"))).json()

    assert (replay["accepted"], replay["written"], replay["unchanged"]) == (3, 0, 3)
    assert await pool.fetch("SELECT *, xmin::text FROM metrics WHERE user_id = $1 ORDER BY metric", user_id) == before


async def test_an_envelope_that_is_wrong_is_422_and_nothing_is_stored(
    api: TestClient, clinic: Tenant, pool: asyncpg.Pool
) -> None:
    user_id = await make_user(api, clinic)
    for body in ({"readings": []}, {"user_id": "1", "readings": []}, {"user_id": user_id, "readings": {}},
                 {"user_id": user_id, "readings": [], "extra": 1}):  # fmt: skip
        response = await api.post("/v1/ingest", json=body, headers=clinic.auth("write"))
        assert response.status == 422, body
        await error_of(response)
    assert await _stored(pool, user_id) == []


async def test_scope_and_tenant_are_checked(api: TestClient, clinic: Tenant, other: Tenant) -> None:
    user_id = await make_user(api, clinic)
    body = {"user_id": user_id, "readings": [reading()]}
    assert (await api.post("/v1/ingest", json=body, headers=clinic.auth("read"))).status == 403
    assert (await api.post("/v1/ingest", json=body, headers=other.auth("write"))).status == 404


async def test_too_many_readings_and_an_oversized_body_are_413_as_json(api: TestClient, clinic: Tenant) -> None:
    user_id = await make_user(api, clinic)
    many = await api.post(
        "/v1/ingest", json={"user_id": user_id, "readings": [reading()] * 5001}, headers=clinic.auth("write")
    )
    assert many.status == 413 and (await error_of(many))["code"] == "too_many_readings"

    huge = json.dumps({"user_id": user_id, "readings": [reading()] * 20000}).encode()
    declared = await api.post(
        "/v1/ingest", data=huge, headers=clinic.auth("write") | {"Content-Type": "application/json"}
    )
    assert declared.status == 413 and (await error_of(declared))["code"] == "too_large"

    async def chunks() -> Any:  # no Content-Length: aiohttp's client_max_size cuts it off
        for start in range(0, len(huge), 65536):
            yield huge[start : start + 65536]

    streamed = await api.post(
        "/v1/ingest", data=chunks(), headers=clinic.auth("write") | {"Content-Type": "application/json"}
    )
    assert streamed.status == 413 and (await error_of(streamed))["code"] == "too_large"


async def _secret(api: TestClient, tenant: Tenant) -> str:
    response = await api.post("/v1/ingest/secrets", json={"name": "ehr"}, headers=tenant.auth("admin"))
    assert response.status == 201
    secret: str = (await response.json())["secret"]
    return secret


def _signed(secret: str, body: bytes, *, stamp: int | None = None, msg_id: str = "msg_1") -> dict[str, str]:
    stamp = int(time.time()) if stamp is None else stamp
    return {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(secret, msg_id, stamp, body),
    }


async def test_a_signed_batch_is_accepted_without_a_key(api: TestClient, clinic: Tenant, pool: asyncpg.Pool) -> None:
    user_id = await make_user(api, clinic)
    secret = await _secret(api, clinic)
    listed = await (await api.get("/v1/ingest/secrets", headers=clinic.auth("admin"))).json()
    assert secret not in json.dumps(listed) and len(listed["data"]) == 1
    stored = await pool.fetchval("SELECT secret_sealed FROM ingest_secrets WHERE tenant_id = $1", clinic.id)
    assert secret not in stored
    body = json.dumps({"user_id": user_id, "readings": [reading()]}).encode()

    response = await api.post(f"/v1/ingest?tenant={clinic.slug}", data=body, headers=_signed(secret, body))

    assert response.status == 200, await response.text()
    assert (await response.json())["written"] == 1


async def test_a_tampered_stale_or_foreign_signature_is_401(api: TestClient, clinic: Tenant, other: Tenant) -> None:
    user_id = await make_user(api, clinic)
    secret, foreign = await _secret(api, clinic), await _secret(api, other)
    body = json.dumps({"user_id": user_id, "readings": [reading()]}).encode()
    tampered = body.replace(b"1200", b"9999")
    url = f"/v1/ingest?tenant={clinic.slug}"
    cases = {
        "tampered": (tampered, _signed(secret, body)),
        "stale": (body, _signed(secret, body, stamp=int(time.time()) - 301)),
        "future": (body, _signed(secret, body, stamp=int(time.time()) + 301)),
        "other tenant's secret": (body, _signed(foreign, body)),
        "no id": (body, {k: v for k, v in _signed(secret, body).items() if k != "webhook-id"}),
    }
    for name, (data, headers) in cases.items():
        response = await api.post(url, data=data, headers=headers)
        assert response.status == 401, name
        await error_of(response)
    assert (await api.post("/v1/ingest?tenant=nope", data=body, headers=_signed(secret, body))).status == 401
    assert (await api.post("/v1/ingest", data=body, headers=_signed(secret, body))).status == 401


async def test_a_revoked_secret_no_longer_verifies(api: TestClient, clinic: Tenant, other: Tenant) -> None:
    user_id = await make_user(api, clinic)
    secret = await _secret(api, clinic)
    secret_id = (await (await api.get("/v1/ingest/secrets", headers=clinic.auth())).json())["data"][-1]["id"]
    assert (await api.delete(f"/v1/ingest/secrets/{secret_id}", headers=other.auth())).status == 404
    assert (await api.delete(f"/v1/ingest/secrets/{secret_id}", headers=clinic.auth("write"))).status == 403
    assert (await api.delete(f"/v1/ingest/secrets/{secret_id}", headers=clinic.auth())).status == 204
    body = json.dumps({"user_id": user_id, "readings": [reading()]}).encode()
    assert (await api.post(f"/v1/ingest?tenant={clinic.slug}", data=body, headers=_signed(secret, body))).status == 401


async def test_batches_record_their_run_and_event_and_go_to_analytics_together(
    api: TestClient, clinic: Tenant, pool: asyncpg.Pool, pipeline_runtime: runtime.Runtime
) -> None:
    user_ids = [await make_user(api, clinic, f"p-{n}") for n in range(3)]
    responses = await asyncio.gather(
        *(
            api.post(
                "/v1/ingest", json={"user_id": u, "readings": [reading(hours_ago=1)]}, headers=clinic.auth("write")
            )
            for u in user_ids
        )
    )
    runs = [(await r.json())["sync_run_id"] for r in responses]
    assert all(r.status == 200 for r in responses) and None not in runs

    found = await pool.fetch(
        "SELECT r.id, r.status, r.rows_written, c.user_id, c.provider FROM sync_runs r"
        " JOIN connections c ON c.id = r.connection_id WHERE r.id = ANY($1::bigint[]) ORDER BY r.id",
        runs,
    )
    assert [(r["status"], r["rows_written"], r["provider"]) for r in found] == [("completed", 1, "ingest")] * 3
    published = await pool.fetch(
        "SELECT payload FROM events WHERE tenant_id = $1 AND type = 'sync.completed'", clinic.id
    )
    by_run = {p["payload"]["data"]["sync_run_id"]: p["payload"]["data"] for p in published}
    assert sorted(by_run) == sorted(runs)
    assert {by_run[r["id"]]["user_id"] for r in found} == set(user_ids)
    assert all(d["rows_written"] == 1 and d["provider"] == "ingest" for d in by_run.values())

    # The three runs leave as analytics messages within moments, most likely one for all three.
    # A worker the suite started earlier may take them off the queue at once: a run it analysed
    # was sent too.
    sent: list[int] = []
    deadline = time.monotonic() + 5
    while sorted(sent) != sorted(runs) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        messages = [json.loads(m) for m in pipeline_runtime.broker.client.hvals("dramatiq:analytics.msgs")]
        sent = await pool.fetchval(
            "SELECT coalesce(array_agg(id), '{}') FROM sync_runs"
            " WHERE id = ANY($1::bigint[]) AND analysed_at IS NOT NULL",
            runs,
        )
        for m in messages:
            ids = m["args"][0] if m["actor_name"] == "analyse_many" else m["args"][:1]
            sent += [i for i in ids if i in runs and i not in sent]
    assert sorted(sent) == sorted(runs)


async def test_a_batch_for_another_tenant_s_user_stores_nothing(
    api: TestClient, clinic: Tenant, other: Tenant, pool: asyncpg.Pool
) -> None:
    theirs = await make_user(api, other)
    response = await api.post(
        "/v1/ingest", json={"user_id": theirs, "readings": [reading(hours_ago=1)]}, headers=clinic.auth("write")
    )
    assert response.status == 404 and (await error_of(response))["code"] == "not_found"
    assert await _stored(pool, theirs) == []
    assert not await pool.fetchval("SELECT count(*) FROM connections WHERE user_id = $1", theirs)
