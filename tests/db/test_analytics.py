"""Daily stats on a real, migrated database: the table has no foreign key (migration 0020), so the
write locks its users once and a user's deletion takes the rows with it by trigger."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta

import asyncpg

from db import tenants, users
from db.analytics import upsert_daily_stats_many
from tests.helpers import Two

DAY = date(2026, 11, 1)


def rows(user_id: int, days: int = 3) -> list[tuple[object, ...]]:
    return [(user_id, "steps", DAY + timedelta(days=d), 5.0 + d, 1.0, 9.0, 3, 5.0, 5.0) for d in range(days)]


async def stored(conn: asyncpg.Connection) -> dict[int, int]:
    found = await conn.fetch("SELECT user_id, count(*) AS n FROM daily_stats GROUP BY user_id ORDER BY user_id")
    return {r["user_id"]: r["n"] for r in found}


async def test_rows_of_a_missing_user_are_not_written_and_the_others_are(conn: asyncpg.Connection) -> None:
    tenant_id = await tenants.ensure_tenant(conn, "stats", "Stats")
    user_id = await tenants.ensure_user(conn, tenant_id, "u0", "User 0")

    await upsert_daily_stats_many(conn, [*rows(user_id), *rows(user_id + 1000)])

    assert await stored(conn) == {user_id: 3}


async def test_deleting_a_tenant_removes_its_users_daily_stats(conn: asyncpg.Connection) -> None:
    tenant_id = await tenants.ensure_tenant(conn, "stats", "Stats")
    other = await tenants.ensure_tenant(conn, "other", "Other")
    gone = await tenants.ensure_user(conn, tenant_id, "u0", "User 0")
    kept = await tenants.ensure_user(conn, other, "u0", "User 0")
    await upsert_daily_stats_many(conn, [*rows(gone), *rows(kept, 2)])

    await conn.execute("DELETE FROM tenants WHERE id = $1", tenant_id)  # users by cascade, stats by trigger

    assert await stored(conn) == {kept: 2}


async def test_an_erase_waits_for_a_write_in_flight_then_deletes_what_it_wrote(
    two: Two,
) -> None:
    writer, eraser, tenant_id, user_id = two
    write = writer.transaction()
    await write.start()
    await upsert_daily_stats_many(writer, rows(user_id))

    erase = asyncio.ensure_future(users.erase(eraser, tenant_id, user_id, "test"))
    await asyncio.sleep(0.5)
    assert not erase.done()  # blocked on the write's lock on the user
    await write.commit()

    assert await asyncio.wait_for(erase, 10) is True
    assert await stored(writer) == {}


async def test_a_write_waiting_on_an_erase_finds_the_user_gone_and_writes_nothing(
    two: Two,
) -> None:
    writer, eraser, tenant_id, user_id = two
    erase = eraser.transaction()
    await erase.start()
    assert await users.erase(eraser, tenant_id, user_id, "test") is True

    write = asyncio.ensure_future(upsert_daily_stats_many(writer, rows(user_id)))
    await asyncio.sleep(0.5)
    assert not write.done()  # blocked on the erase's lock on the user
    await erase.commit()

    await asyncio.wait_for(write, 10)
    assert await stored(writer) == {}
