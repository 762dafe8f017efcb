"""The metric upsert on a real, migrated database: both paths of ``upsert`` and ``upsert_many``.

``upsert`` sends fewer than ``STAGED_FROM`` distinct keys as one unnest statement and more
through COPY and a staging table, so each behaviour is checked at a size on either side.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from db import connections, tenants, users
from db.metrics import STAGED_FROM, MetricRow, OwnerGone, Reading, UpsertCounts, upsert, upsert_many
from db.migrate import migrate
from db.pool import connect
from db.sealing import Keyring
from tests.helpers import Two

START = datetime(2026, 1, 1, tzinfo=UTC)
METRICS = 30
PROVIDER = "simulator"

Write = Callable[[asyncpg.Connection, int, Sequence[Reading]], Awaitable[UpsertCounts]]


async def _unnest(conn: asyncpg.Connection, user_id: int, readings: Sequence[Reading]) -> UpsertCounts:
    assert len({(r.metric, r.recorded_at) for r in readings}) < STAGED_FROM
    return await upsert(conn, user_id, PROVIDER, None, readings)


async def _staged(conn: asyncpg.Connection, user_id: int, readings: Sequence[Reading]) -> UpsertCounts:
    assert len({(r.metric, r.recorded_at) for r in readings}) >= STAGED_FROM
    return await upsert(conn, user_id, PROVIDER, None, readings)


async def _many(conn: asyncpg.Connection, user_id: int, readings: Sequence[Reading]) -> UpsertCounts:
    return await upsert_many(conn, rows(user_id, readings))


# (writer, readings per call): the size puts ``upsert`` on the path the name says.
PATHS = {
    "upsert-unnest": (_unnest, 2 * METRICS),
    "upsert-staged": (_staged, STAGED_FROM + 7),
    "upsert_many": (_many, 2 * METRICS),
}
paths = pytest.mark.parametrize("path", list(PATHS))


def readings(count: int, offset: float = 0.0) -> list[Reading]:
    """``count`` readings, day-major over 30 metrics, as a provider streams them."""
    return [
        Reading(f"metric_{i % METRICS:02d}", START + timedelta(days=i // METRICS), float(i % 997) + offset, "unit")
        for i in range(count)
    ]


def rows(user_id: int, batch: Sequence[Reading], connection_id: int | None = None) -> list[MetricRow]:
    return [MetricRow(user_id, PROVIDER, r.metric, r.recorded_at, r.value, r.unit, connection_id) for r in batch]


def bumped(reading: Reading, by: float = 0.5) -> Reading:
    return replace(reading, value=reading.value + by)


async def make_users(conn: asyncpg.Connection, count: int) -> list[int]:
    tenant_id = await tenants.ensure_tenant(conn, "metrics", "Metrics")
    return [await tenants.ensure_user(conn, tenant_id, f"u{i}", f"User {i}") for i in range(count)]


async def stored(conn: asyncpg.Connection, user_id: int) -> dict[tuple[str, str, datetime], tuple[float, str]]:
    found = await conn.fetch(
        "SELECT provider, metric, recorded_at, value, unit FROM metrics WHERE user_id = $1", user_id
    )
    return {(r["provider"], r["metric"], r["recorded_at"]): (r["value"], r["unit"]) for r in found}


async def versions(conn: asyncpg.Connection, user_id: int) -> dict[tuple[str, datetime], str]:
    """Each row's xmin: it changes only when the row is written."""
    found = await conn.fetch("SELECT metric, recorded_at, xmin::text AS v FROM metrics WHERE user_id = $1", user_id)
    return {(r["metric"], r["recorded_at"]): r["v"] for r in found}


def expected(batch: Sequence[Reading]) -> dict[tuple[str, str, datetime], tuple[float, str]]:
    return {(PROVIDER, r.metric, r.recorded_at): (r.value, r.unit) for r in batch}


@paths
async def test_a_first_load_inserts_every_reading(conn: asyncpg.Connection, path: str) -> None:
    write, count = PATHS[path]
    [user_id] = await make_users(conn, 1)
    batch = readings(count)

    assert await write(conn, user_id, batch) == UpsertCounts(inserted=count)
    assert await stored(conn, user_id) == expected(batch)


@paths
async def test_a_replay_writes_nothing_and_counts_every_reading_unchanged(conn: asyncpg.Connection, path: str) -> None:
    write, count = PATHS[path]
    [user_id] = await make_users(conn, 1)
    batch = readings(count)
    await write(conn, user_id, batch)
    before = await versions(conn, user_id)

    assert await write(conn, user_id, batch) == UpsertCounts(unchanged=count)
    assert await versions(conn, user_id) == before


@paths
async def test_a_changed_value_or_unit_updates_exactly_those_rows(conn: asyncpg.Connection, path: str) -> None:
    write, count = PATHS[path]
    [user_id] = await make_users(conn, 1)
    batch = readings(count)
    await write(conn, user_id, batch)
    before = await versions(conn, user_id)
    changed = [bumped(r) if i % 7 == 0 else r for i, r in enumerate(batch)]
    changed[1] = replace(changed[1], unit="other")
    touched = {(r.metric, r.recorded_at) for i, r in enumerate(batch) if i % 7 == 0 or i == 1}

    counts = await write(conn, user_id, changed)

    assert counts == UpsertCounts(updated=len(touched), unchanged=count - len(touched))
    assert await stored(conn, user_id) == expected(changed)
    after = await versions(conn, user_id)
    assert {key for key in after if after[key] != before[key]} == touched


@paths
async def test_a_key_sent_twice_in_one_call_keeps_the_last_and_counts_the_other_unchanged(
    conn: asyncpg.Connection, path: str
) -> None:
    write, count = PATHS[path]
    [user_id] = await make_users(conn, 1)
    base = readings(count)
    same, to_new, twice_new, fresh = base[:4]
    await upsert_many(conn, rows(user_id, [same, to_new, twice_new]))
    # Every order in which Postgres could otherwise see the same key twice in one statement.
    batch = [
        bumped(same), same,  # changed, then back to what is stored: nothing to write
        to_new, bumped(to_new),  # stored, then changed: an update
        bumped(twice_new), bumped(twice_new),  # the same change twice: one update
        bumped(fresh, 5), fresh,  # a new key twice: one insert, of the last
        *base[4:],
    ]  # fmt: skip

    counts = await write(conn, user_id, batch)

    assert counts == UpsertCounts(inserted=count - 3, updated=2, unchanged=len(batch) - (count - 3) - 2)
    assert await stored(conn, user_id) == expected([same, bumped(to_new), bumped(twice_new), fresh, *base[4:]])


@paths
async def test_a_key_changed_then_sent_back_as_stored_in_one_call_keeps_the_stored_value(
    conn: asyncpg.Connection, path: str
) -> None:
    # Alone in its call, without another repeated key to fail the statement: the replay skips
    # the row equal to the stored one, so only the count of staged rows per written key sees it.
    write, count = PATHS[path]
    [user_id] = await make_users(conn, 1)
    base = readings(count)
    await write(conn, user_id, base)
    before = await versions(conn, user_id)

    counts = await write(conn, user_id, [bumped(base[0]), *base])

    assert counts == UpsertCounts(unchanged=count + 1)
    assert await stored(conn, user_id) == expected(base)
    assert await versions(conn, user_id) == before


async def test_one_upsert_many_call_carries_several_users_providers_and_connections(
    conn: asyncpg.Connection, keyring: Keyring
) -> None:
    first, second, third = await make_users(conn, 3)
    connection_id = await connections.upsert(conn, keyring, user_id=second, provider=PROVIDER, tokens={"a": "b"})
    batch = readings(2 * METRICS)
    mixed = [
        *rows(first, batch),
        *rows(second, batch, connection_id),
        *[row._replace(provider="oura") for row in rows(second, batch[:METRICS])],
        *rows(third, batch[::2]),
    ]
    mixed.sort(key=lambda row: row.recorded_at)  # interleave the owners

    assert await upsert_many(conn, mixed) == UpsertCounts(inserted=len(mixed))
    assert await upsert_many(conn, mixed) == UpsertCounts(unchanged=len(mixed))
    assert await stored(conn, first) == expected(batch)
    assert await stored(conn, second) == expected(batch) | {
        ("oura", r.metric, r.recorded_at): (r.value, r.unit) for r in batch[:METRICS]
    }
    assert await stored(conn, third) == expected(batch[::2])
    linked = await conn.fetch("SELECT DISTINCT user_id, provider, connection_id FROM metrics ORDER BY 1, 2")
    assert [tuple(r) for r in linked] == [
        (first, PROVIDER, None),
        (second, "oura", None),
        (second, PROVIDER, connection_id),
        (third, PROVIDER, None),
    ]


async def test_upsert_many_inside_the_callers_transaction_counts_only_its_own_rows(conn: asyncpg.Connection) -> None:
    first, second = await make_users(conn, 2)
    batch = readings(2 * METRICS)

    async with conn.transaction():
        one = await upsert_many(conn, rows(first, batch))
        # A key twice makes the second call retry inside its own savepoint.
        two = await upsert_many(conn, rows(second, [*batch, batch[0]]))

    assert one == UpsertCounts(inserted=len(batch))
    assert two == UpsertCounts(inserted=len(batch), unchanged=1)
    assert await stored(conn, first) == expected(batch) == await stored(conn, second)


async def test_every_path_leaves_the_same_rows_and_counts_the_same(conn: asyncpg.Connection) -> None:
    users = await make_users(conn, 3)
    count = STAGED_FROM + 7
    batch = readings(count)
    changed = [bumped(r) if i % 5 == 0 else r for i, r in enumerate(batch)]
    changed[3] = replace(changed[3], unit="other")
    touched = sum(1 for i in range(count) if i % 5 == 0 or i == 3)
    step = STAGED_FROM // 2  # below the crossover, so upsert takes the unnest path

    async def unnest(user_id: int, sent: list[Reading]) -> UpsertCounts:
        counts = UpsertCounts()
        for start in range(0, len(sent), step):
            counts += await _unnest(conn, user_id, sent[start : start + step])
        return counts

    async def staged(user_id: int, sent: list[Reading]) -> UpsertCounts:
        return await _staged(conn, user_id, sent)

    async def many(user_id: int, sent: list[Reading]) -> UpsertCounts:
        return await _many(conn, user_id, sent)

    results = []
    for user_id, write in zip(users, (unnest, staged, many), strict=True):
        counts = [await write(user_id, sent) for sent in (batch, batch, changed, batch)]
        results.append((counts, await stored(conn, user_id)))

    assert results[0] == results[1] == results[2]
    assert results[0][0] == [
        UpsertCounts(inserted=count),
        UpsertCounts(unchanged=count),
        UpsertCounts(updated=touched, unchanged=count - touched),
        UpsertCounts(updated=touched, unchanged=count - touched),
    ]
    assert results[0][1] == expected(batch)


async def test_a_key_twice_in_the_first_call_on_a_connection_still_lands(fresh_db: str) -> None:
    # The retry meets a connection whose staging table was rolled back with the first attempt.
    setup = await connect(fresh_db)
    await migrate(setup)
    [user_id] = await make_users(setup, 1)
    await setup.close()
    conn = await connect(fresh_db)
    batch = readings(METRICS)
    try:
        counts = await upsert_many(conn, rows(user_id, [*batch, bumped(batch[0])]))
        assert counts == UpsertCounts(inserted=len(batch), unchanged=1)
        assert await stored(conn, user_id) == expected([bumped(batch[0]), *batch[1:]])
        assert await upsert_many(conn, rows(user_id, batch[:1])) == UpsertCounts(updated=1)
    finally:
        await conn.close()


async def test_an_empty_call_writes_nothing(conn: asyncpg.Connection) -> None:
    [user_id] = await make_users(conn, 1)

    assert await upsert(conn, user_id, PROVIDER, None, []) == UpsertCounts()
    assert await upsert_many(conn, []) == UpsertCounts()
    assert await stored(conn, user_id) == {}


# Readings have no foreign keys (migration 0017): every write locks its owners instead, and
# triggers on users and connections do what ON DELETE did.


@paths
async def test_a_write_for_a_user_that_does_not_exist_raises_and_stores_nothing(
    conn: asyncpg.Connection, path: str
) -> None:
    write, count = PATHS[path]
    [user_id] = await make_users(conn, 1)

    with pytest.raises(OwnerGone):
        await write(conn, user_id + 1000, readings(count))

    assert await conn.fetchval("SELECT count(*) FROM metrics") == 0
    assert await write(conn, user_id, readings(count)) == UpsertCounts(inserted=count)  # conn is still usable


@pytest.mark.parametrize("path", ["upsert-unnest", "upsert-staged", "upsert_many"])
async def test_a_write_for_a_connection_that_does_not_exist_raises_and_stores_nothing(
    conn: asyncpg.Connection, keyring: Keyring, path: str
) -> None:
    count = PATHS[path][1]
    [user_id] = await make_users(conn, 1)
    connection_id = await connections.upsert(conn, keyring, user_id=user_id, provider=PROVIDER, tokens={"a": "b"})
    gone = connection_id + 1000
    batch = readings(count)

    with pytest.raises(OwnerGone):
        if path == "upsert_many":
            # One good owner beside the missing one: the whole call is refused.
            await upsert_many(conn, [*rows(user_id, batch[:1], connection_id), *rows(user_id, batch[1:], gone)])
        else:
            await upsert(conn, user_id, PROVIDER, gone, batch)

    assert await conn.fetchval("SELECT count(*) FROM metrics") == 0


async def test_an_erase_waits_for_a_write_in_flight_then_deletes_what_it_wrote(two: Two) -> None:
    writer, eraser, tenant_id, user_id = two
    write = writer.transaction()
    await write.start()
    assert await upsert(writer, user_id, PROVIDER, None, readings(METRICS)) == UpsertCounts(inserted=METRICS)

    erase = asyncio.ensure_future(users.erase(eraser, tenant_id, user_id, "test"))
    await asyncio.sleep(0.5)
    assert not erase.done()  # blocked on the write's lock on the user
    await write.commit()

    assert await asyncio.wait_for(erase, 10) is True
    assert await writer.fetchval("SELECT count(*) FROM metrics WHERE user_id = $1", user_id) == 0


async def test_a_write_waiting_on_an_erase_finds_the_user_gone_and_stores_nothing(two: Two) -> None:
    writer, eraser, tenant_id, user_id = two
    erase = eraser.transaction()
    await erase.start()
    assert await users.erase(eraser, tenant_id, user_id, "test") is True

    write = asyncio.ensure_future(upsert_many(writer, rows(user_id, readings(METRICS))))
    await asyncio.sleep(0.5)
    assert not write.done()  # blocked on the erase's lock on the user
    await erase.commit()

    with pytest.raises(OwnerGone):
        await asyncio.wait_for(write, 10)
    assert await writer.fetchval("SELECT count(*) FROM metrics WHERE user_id = $1", user_id) == 0


async def test_deleting_a_connection_unlinks_its_readings_and_deleting_a_tenant_removes_them(
    conn: asyncpg.Connection, keyring: Keyring
) -> None:
    first, second = await make_users(conn, 2)
    linked = await connections.upsert(conn, keyring, user_id=first, provider=PROVIDER, tokens={"a": "b"})
    other = await connections.upsert(conn, keyring, user_id=second, provider=PROVIDER, tokens={"a": "b"})
    batch = readings(METRICS)
    await upsert_many(conn, [*rows(first, batch, linked), *rows(second, batch, other)])

    await conn.execute("DELETE FROM connections WHERE id = $1", linked)

    found = await conn.fetch("SELECT user_id, connection_id, count(*) AS n FROM metrics GROUP BY 1, 2 ORDER BY 1")
    assert [tuple(r) for r in found] == [(first, None, METRICS), (second, other, METRICS)]
    assert await stored(conn, first) == expected(batch)  # kept until the weekly cleanup

    await conn.execute("DELETE FROM tenants")  # users, connections and readings, by cascade and trigger

    assert await conn.fetchval("SELECT count(*) FROM metrics") == 0


async def test_a_first_load_racing_another_writer_of_the_same_keys_counts_them_unchanged(two: Two) -> None:
    # Both see no stored readings and try the plain first-load insert; the second waits on the
    # first's keys, gets a unique violation when it commits, and starts again through ON CONFLICT.
    first, second, _, user_id = two
    batch = rows(user_id, readings(2 * METRICS))
    write = first.transaction()
    await write.start()
    assert await upsert_many(first, batch) == UpsertCounts(inserted=len(batch))

    racing = asyncio.ensure_future(upsert_many(second, batch))
    await asyncio.sleep(0.5)
    assert not racing.done()  # waiting on the first writer's uncommitted keys
    await write.commit()

    assert await asyncio.wait_for(racing, 10) == UpsertCounts(unchanged=len(batch))
    assert await stored(first, user_id) == expected(readings(2 * METRICS))
