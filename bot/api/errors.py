"""API errors: every failure leaves as ``{"error": {"code", "message", "details"}}``."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web


class ApiError(web.HTTPException):
    """An error with a stable machine code, a message for people and optional details
    (such as the invalid fields).  Raised by handlers; rendered by the app's error middleware."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status_code = status
        body = {"error": {"code": code, "message": message, "details": details}}
        super().__init__(text=json.dumps(body), content_type="application/json", headers=headers)
        self.code, self.message, self.details = code, message, details


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


def invalid(message: str, details: Any = None) -> ApiError:
    return ApiError(422, "invalid", message, details)
