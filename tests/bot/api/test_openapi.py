"""The spec tells the truth about the routes; the docs page is self-contained and escaped."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from tests.bot.api.conftest import Tenant


async def test_the_spec_lists_exactly_the_app_s_v1_routes(api: TestClient) -> None:
    spec = await (await api.get("/v1/openapi.json")).json()
    declared = {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}
    routed = {
        (route.method, route.resource.canonical)
        for route in api.app.router.routes()
        if route.resource is not None and route.resource.canonical.startswith("/v1/") and route.method != "HEAD"
    }
    assert declared == routed
    assert spec["openapi"].startswith("3.1")


async def test_every_keyed_operation_documents_401_403_429_and_503(api: TestClient) -> None:
    spec = await (await api.get("/v1/openapi.json")).json()
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            if op["security"]:
                assert {"401", "403", "429", "503"} <= set(op["responses"]), (method, path)
            if "{" in path:
                assert "404" in op["responses"], (method, path)


async def test_the_docs_page_loads_nothing_from_elsewhere(api: TestClient) -> None:
    response = await api.get("/docs")
    assert response.status == 200 and response.content_type == "text/html"
    page = await response.text()
    assert "/v1/users/{user_id}/metrics" in page
    assert "<script" not in page and "http://" not in page.replace('href="/v1/openapi.json"', "")
    assert "https://" not in page


async def test_limits_are_documented_and_the_spec_is_public(api: TestClient, clinic: Tenant) -> None:
    response = await api.get("/v1/openapi.json")
    assert response.status == 200
    assert "Retry-After" in (await response.text())
