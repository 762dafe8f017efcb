"""schemathesis against the live app: generated requests from /v1/openapi.json, over real HTTP,
into real Postgres, with an admin key.  No answer may be a 5xx, and every answer must match
the spec (status code, content type, schema)."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from bot.api.settings import ApiSettings
from bot.app import make_app
from bot.settings import BotSettings
from db import api_keys, tenants
from db.pool import create_pool
from pipeline import runtime

# Per operation and generation mode; about 20 operations, so well over 200 cases in all.
EXAMPLES = 8
MIN_CASES = 200


@dataclass(frozen=True)
class LiveApi:
    base_url: str
    headers: dict[str, str]
    user_id: int
    key_id: int


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def live_api(pipeline_runtime: runtime.Runtime) -> Iterator[LiveApi]:
    """The app on a real port, on its own event loop in a thread (schemathesis calls it
    synchronously, so it cannot share the test's loop)."""
    port, ready, stop = _free_port(), threading.Event(), threading.Event()
    found: dict[str, object] = {}

    async def serve() -> None:
        pool = await create_pool(pipeline_runtime.services.database_url, max_size=4)
        async with pool.acquire() as conn:
            tenant_id = await tenants.ensure_tenant(conn, "schemathesis", "Fuzz clinic")
            created, key = await api_keys.create(conn, tenant_id, "fuzz", ["admin"])
            found["key_id"] = created.id
            found["user_id"] = await tenants.ensure_user(conn, tenant_id, "fuzz-1", "Fuzz Patient")
        found["key"] = key
        app = make_app(
            pool,
            pipeline_runtime.broker,
            settings=BotSettings("127.0.0.1", port, f"http://127.0.0.1:{port}"),
            limits=ApiSettings(rate_limit_per_minute=0),
            keyring=pipeline_runtime.keyring,
        )
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.05)
        await runner.cleanup()
        await pool.close()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(30), "the live app did not start"
    yield LiveApi(
        f"http://127.0.0.1:{port}",
        {"Authorization": f"Bearer {found['key']}"},
        int(str(found["user_id"])),
        int(str(found["key_id"])),
    )
    stop.set()
    thread.join(10)


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def _fuzz(live_api: LiveApi, operation: Any, mode: GenerationMode, statuses: dict[int, int]) -> int:
    """Run EXAMPLES generated cases of one operation; returns how many ran.  Raises on a failure,
    with a curl line to reproduce it."""
    positive = mode is GenerationMode.POSITIVE
    erase = operation.method.upper() == "DELETE" and operation.path == "/v1/users/{user_id}"
    ran = 0

    # A third of the user ids are the tenant's own user, so the success paths run too.
    @given(case=operation.as_strategy(generation_mode=mode), user_id=st.sampled_from([live_api.user_id, 1, 2**62]))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any, user_id: int) -> None:
        nonlocal ran
        ran += 1
        params = case.path_parameters if isinstance(case.path_parameters, dict) else {}
        # Keep the run's own key and user alive: revoking or erasing them would turn the rest
        # of the run into 401s and 404s.
        if params.get("key_id") == live_api.key_id:
            params["key_id"] = live_api.key_id + 10**12
        if positive and "user_id" in params and not erase:
            params["user_id"] = user_id
        elif params.get("user_id") == live_api.user_id:
            params["user_id"] = live_api.user_id + 10**12
        # The generated case carries a made-up bearer token of its own: send the real key.
        case.headers = {**(case.headers or {}), **live_api.headers}
        response = case.call(base_url=live_api.base_url, timeout=10)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        case.validate_response(response, checks=CHECKS)

    run()
    return ran


def test_generated_requests_get_no_5xx_and_only_answers_the_spec_describes(live_api: LiveApi) -> None:
    schema = schemathesis.openapi.from_url(f"{live_api.base_url}/v1/openapi.json")
    statuses: dict[int, int] = {}
    cases = sum(
        _fuzz(live_api, result.ok(), mode, statuses)
        for result in schema.get_all_operations()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    )
    print(f"schemathesis: {cases} cases, statuses {dict(sorted(statuses.items()))}")
    assert cases >= MIN_CASES
    assert sum(n for status, n in statuses.items() if status < 300) >= 20, statuses
