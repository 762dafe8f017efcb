"""Fixtures for the storage tests that race two writers on one database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from db import tenants
from db.migrate import migrate
from db.pool import connect
from tests.helpers import Two


@pytest.fixture
async def two(fresh_db: str) -> AsyncIterator[Two]:
    """Two connections to one migrated database, and a user: (first, second, tenant id, user id)."""
    first, second = await connect(fresh_db), await connect(fresh_db)
    try:
        await migrate(first)
        tenant_id = await tenants.ensure_tenant(first, "races", "Races")
        yield first, second, tenant_id, await tenants.ensure_user(first, tenant_id, "u0", "User 0")
    finally:
        await first.close()
        await second.close()
