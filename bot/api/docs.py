"""The spec at ``/v1/openapi.json`` and a plain, self-contained docs page at ``/docs``.

The page is rendered here from the same operations as the spec, with every value escaped,
and loads nothing from anywhere else: no CDN, no script.
"""

from __future__ import annotations

from html import escape
from typing import Any

from aiohttp import web

from bot.api.context import ROUTES_DECLARED
from bot.api.openapi import Routes, build_spec

SPEC: web.AppKey[dict[str, Any]] = web.AppKey("openapi_spec", dict)


def publish(app: web.Application, routes: Routes, server_url: str) -> None:
    """Build the spec once every resource has added its routes (``bot.api.setup`` calls it last)."""
    app[SPEC] = build_spec(routes.operations, server_url=server_url)


def spec(request: web.Request) -> dict[str, Any]:
    return request.app[SPEC]


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(spec(request))


async def docs_page(request: web.Request) -> web.Response:
    found = spec(request)
    rows = [
        f"<tr><td><code>{escape(op.method)}</code></td><td><code>{escape(op.path)}</code></td>"
        f"<td>{escape(op.summary)}</td><td>{escape(op.scope or 'public')}</td>"
        f"<td>{escape(', '.join(p.name for p in op.query))}</td>"
        f"<td>{escape(' '.join(found['paths'][op.path][op.method.lower()]['responses']))}</td></tr>"
        for op in sorted(request.app[ROUTES_DECLARED].operations, key=lambda o: (o.path, o.method))
    ]
    html = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(found["info"]["title"])}</title>
<style>body{{font:15px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:72rem;padding:0 1rem}}
table{{border-collapse:collapse;width:100%}}
td,th{{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}}
code{{font-size:90%}}</style></head><body>
<h1>{escape(found["info"]["title"])}</h1>
<p>{escape(found["info"]["description"])} The machine-readable spec is
<a href="/v1/openapi.json">/v1/openapi.json</a> (OpenAPI {escape(found["openapi"])}).
Authenticate with <code>Authorization: Bearer &lt;key&gt;</code>; errors are
<code>{{"error": {{"code", "message", "details"}}}}</code>.</p>
<table><thead><tr><th>Method</th><th>Path</th><th>Summary</th><th>Scope</th><th>Query</th><th>Statuses</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table></body></html>
"""
    return web.Response(text=html, content_type="text/html")


def add_routes(routes: Routes) -> None:
    routes.add(
        "GET",
        "/v1/openapi.json",
        openapi_json,
        scope=None,
        tag="meta",
        summary="This API's OpenAPI 3.1 description",
        responses={200: {"type": "object", "required": ["openapi", "paths"]}},
    )
    # Outside /v1, so not an API operation: a page for people.
    routes.router.add_get("/docs", docs_page)
