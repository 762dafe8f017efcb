"""The API's routes and its OpenAPI 3.1 description, declared in one place so they cannot drift.

Every ``/v1`` route is added through ``Routes.add``, next to its handler, in its resource
module: the call registers the handler on the router *and* records the operation (method,
path, scope, summary, query parameters, request and response schemas) for the spec served at
``/v1/openapi.json``.  A test compares the spec with the router, so a route added any other
way fails the suite.  To add a resource::

    # bot/api/widgets.py
    WIDGET = {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}}

    def add_routes(routes: Routes) -> None:
        routes.add("GET", "/v1/widgets/{widget_id}", get_widget, scope="read", tag="widgets",
                   summary="One widget", responses={200: WIDGET})
        routes.add("POST", "/v1/widgets", create_widget, scope="write", tag="widgets",
                   summary="Create a widget", body=NEW_WIDGET, responses={201: WIDGET})

    # bot/api/__init__.py: append widgets.add_routes to ROUTES.

Path parameters are taken from the path (``{name}``; every one is an id, an integer of 1 or
more).  Error responses are derived from what the operation declares: 401 (unless
``scope=None``), 403 (with a scope), 404 (with a path parameter, or ``not_found=True``), 400,
413, 415 and 422 (with a body), 422 (with query parameters), 429 and 503 (always), plus any
``errors`` listed; each has the ``Error`` schema.  ``responses`` maps each success status to
its schema, or to None for an empty body (204).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

Schema = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

BIGINT_MAX = 2**63 - 1
ID: Schema = {"type": "integer", "minimum": 1, "maximum": BIGINT_MAX}
ERROR: Schema = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "details": {}},
        }
    },
}
REASONS = {
    400: "The body or a parameter is malformed",
    401: "No API key, or an unknown, expired or revoked one",
    403: "The key lacks the scope",
    404: "Not found, or another tenant's",
    409: "Conflicts with the current state",
    413: "The body or batch is too large",
    415: "The body is not JSON",
    422: "A field or parameter is invalid",
    429: "Rate limited: retry after `Retry-After` seconds",
    503: "The request took too long",
}
_PARAM = re.compile(r"{(\w+)}")


@dataclass(frozen=True, slots=True)
class Param:
    """A query parameter."""

    name: str
    schema: Schema
    description: str
    required: bool = False


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str
    handler_name: str
    scope: str | None
    tag: str
    summary: str
    responses: Mapping[int, Schema | None]
    body: Schema | None = None
    query: tuple[Param, ...] = ()
    errors: tuple[int, ...] = ()
    description: str = ""
    security: tuple[str, ...] = ("bearer",)

    def error_statuses(self) -> list[int]:
        found = {429, 503, *self.errors}
        if self.scope is not None:
            found |= {401, 403}
        if _PARAM.search(self.path):
            found.add(404)
        if self.body is not None:
            found |= {400, 413, 415, 422}
        if self.query:
            found.add(422)
        return sorted(found)

    def as_openapi(self) -> dict[str, Any]:
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": ID} for name in _PARAM.findall(self.path)
        ] + [
            {"name": p.name, "in": "query", "required": p.required, "schema": p.schema, "description": p.description}
            for p in self.query
        ]
        responses: dict[str, Any] = {}
        for status, schema in sorted(self.responses.items()):
            entry: dict[str, Any] = {"description": "Success"}
            if schema is not None:
                entry["content"] = {"application/json": {"schema": schema}}
            responses[str(status)] = entry
        for status in self.error_statuses():
            responses[str(status)] = {
                "description": REASONS.get(status, "Error"),
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
        found: dict[str, Any] = {
            "operationId": self.handler_name,
            "summary": self.summary,
            "tags": [self.tag],
            "parameters": parameters,
            "responses": responses,
            "security": [{name: []} for name in self.security] if self.scope is not None else [],
        }
        description = self.description + (f"\n\nScope: `{self.scope}`." if self.scope else "")
        if description.strip():
            found["description"] = description.strip()
        if self.body is not None:
            found["requestBody"] = {"required": True, "content": {"application/json": {"schema": self.body}}}
        return found


@dataclass
class Routes:
    """The router plus the operations added to it; see the module docstring."""

    router: web.UrlDispatcher
    operations: list[Operation] = field(default_factory=list)

    def add(
        self,
        method: str,
        path: str,
        handler: Handler,
        *,
        scope: str | None,
        tag: str,
        summary: str,
        responses: Mapping[int, Schema | None],
        body: Schema | None = None,
        query: Iterable[Param] = (),
        errors: Iterable[int] = (),
        description: str = "",
        security: tuple[str, ...] = ("bearer",),
    ) -> None:
        """Register ``handler`` for ``method path`` and record its operation for the spec."""
        self.router.add_route(method, path, handler)
        self.operations.append(
            Operation(
                method.upper(),
                path,
                handler.__name__,
                scope,
                tag,
                summary,
                dict(responses),
                body,
                tuple(query),
                tuple(errors),
                description,
                security,
            )
        )


def listing(item: Schema) -> Schema:
    """A response of ``{"data": [item, …]}``: a whole, small list (no pages)."""
    return {"type": "object", "required": ["data"], "properties": {"data": {"type": "array", "items": item}}}


def build_spec(operations: Iterable[Operation], *, server_url: str | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document for ``operations``."""
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = op.as_openapi()
    spec: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "CareBeacon API",
            "version": "1",
            "description": "Integrator API: users, connections, sync, health data, ingest. See docs/api.md.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": {"Error": ERROR},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "An API key: `cbk_…`"},
                "standardWebhooks": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "webhook-signature",
                    "description": "A Standard Webhooks signature (`webhook-id`, `webhook-timestamp`,"
                    " `webhook-signature`) made with the tenant's inbound secret; the tenant is the"
                    " `tenant` query parameter.",
                },
            },
        },
    }
    if server_url:
        spec["servers"] = [{"url": server_url}]
    return spec
