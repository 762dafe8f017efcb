"""A connection to a freshly migrated database, for the tests of the data layer."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from db.migrate import migrate
from db.pool import connect


@pytest.fixture
async def conn(fresh_db: str) -> AsyncIterator[asyncpg.Connection]:
    found = await connect(fresh_db)
    await migrate(found)
    yield found
    await found.close()
