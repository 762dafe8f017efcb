"""The shared HTTP plumbing of REST providers: one session per call, one timeout, one error map.

Every response and every aiohttp failure is turned into the pipeline's error tree here, and
nowhere else:

=====================================================  ==================================
What happened                                          Raised
=====================================================  ==================================
429                                                    TransientSyncError, ``retry_after``
                                                       from ``Retry-After`` (seconds or an
                                                       HTTP-date), None when absent
408, 5xx, refused or reset connection, timeout         TransientSyncError
401 on a data request                                  AccessTokenRejectedError (transient)
token endpoint 400/401 ``invalid_client``              PermanentSyncError (our app's
                                                       credentials: an operator's problem)
token endpoint 400/401, anything else                  RefreshFailedError (reconnect)
any other 4xx                                          PermanentSyncError with the peer's
                                                       own message
=====================================================  ==================================

There is no retry loop: Dramatiq retries the whole run.  Messages name the provider, the status
and the peer's explanation, with every token and the client secret scrubbed out; no header is
ever logged.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp

from db import env as envlib
from pipeline.errors import AccessTokenRejectedError, PermanentSyncError, RefreshFailedError, TransientSyncError
from pipeline.providers.base import Provider

JSON = dict[str, Any]

DEFAULT_TIMEOUT = 30.0
# Vendors ask integrations to name themselves (Oura's quick start shows a User-Agent).
HEADERS = {"Accept": "application/json", "User-Agent": "CareBeacon"}
# Enough to read a provider's explanation; a whole HTML error page helps nobody in a run row.
DETAIL_LIMIT = 200
# OAuth error codes that mean our application, not the user's grant, is refused: reconnecting
# would not help, and disabling every user's connection over a rotated secret would be a disaster.
CLIENT_ERRORS = frozenset({"invalid_client", "unauthorized_client"})


@dataclass(frozen=True, slots=True)
class OAuthApp:
    """Our registration with a provider's OAuth2 server."""

    token_url: str
    client_id: str
    client_secret: str = field(repr=False)
    # RFC 6749 prefers HTTP Basic; some vendors (Oura among them) document form fields instead.
    basic_auth: bool = False


def timeout_from_env(env: envlib.Env, name: str = "PROVIDER_TIMEOUT_SECONDS") -> float:
    """Seconds per provider request (default 30); decimals allowed so tests can go below one."""
    raw = envlib.text(env, name)
    if raw is None:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 < value <= 300:
        raise envlib.SettingError(name, "a number of seconds > 0 and <= 300", raw)
    return value


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date); None if unusable."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a naive parse means "-0000"
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with each secret replaced, so a peer that echoes a token cannot leak it into a run row."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


@asynccontextmanager
async def translate_errors(provider: str) -> AsyncIterator[None]:
    """Turn aiohttp's connection failures and timeouts into TransientSyncError."""
    try:
        yield
    except TimeoutError as exc:  # asyncio.TimeoutError and aiohttp.ServerTimeoutError are both this
        raise TransientSyncError(f"{provider}: no answer within the request timeout") from exc
    except aiohttp.ClientConnectionError as exc:
        # The class name says refused, reset or disconnected; str(exc) may hold the URL, so it stays out.
        raise TransientSyncError(f"{provider}: connection failed ({type(exc).__name__})") from exc
    except aiohttp.ClientPayloadError as exc:
        raise TransientSyncError(f"{provider}: the response was cut short") from exc


async def check(
    provider: str, response: aiohttp.ClientResponse, secrets: Iterable[str | None], *, token_request: bool = False
) -> None:
    """Return when ``response`` succeeded; otherwise raise per the table in the module docstring."""
    status = response.status
    if status < 400:
        return
    hidden = list(secrets)
    body = await _error_body(response)
    detail = scrub(_describe(body), hidden)[:DETAIL_LIMIT]
    message = f"{provider} answered {status}" + (f": {detail}" if detail else "")
    if status == 429:
        raise TransientSyncError(message, retry_after(response.headers.get("Retry-After")))
    if status == 408 or status >= 500:
        raise TransientSyncError(message)
    if token_request and status in (400, 401):
        if body.get("error") in CLIENT_ERRORS:
            raise PermanentSyncError(f"{message} (check the client id and secret)")
        raise RefreshFailedError(f"{message}; the user must reconnect {provider}")
    if status == 401:
        raise AccessTokenRejectedError(message)
    raise PermanentSyncError(message)


async def read_json(provider: str, response: aiohttp.ClientResponse) -> JSON:
    """The JSON object of a successful response; a body that is not one is a provider fault (transient)."""
    try:
        found = await response.json(content_type=None)
    except ValueError as exc:
        raise TransientSyncError(f"{provider} answered {response.status} with a body that is not JSON") from exc
    if not isinstance(found, dict):
        raise TransientSyncError(f"{provider} answered {response.status} with JSON that is not an object")
    return found


class RestProvider(Provider):
    """A provider reached over HTTPS with OAuth2 bearer tokens.

    Subclasses set ``base_url`` and ``oauth`` through the constructor and write ``fetch`` with
    ``session()`` and ``get_json()``.  Without ``oauth`` the provider still registers, but
    reports itself unavailable and every call raises PermanentSyncError.
    """

    def __init__(self, base_url: str, oauth: OAuthApp | None, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.base_url = base_url.rstrip("/")
        self.oauth = oauth
        self.timeout = timeout

    @property
    def unavailable_reason(self) -> str | None:
        """Why this provider cannot be used here (None when it can)."""
        return None if self.oauth is not None else f"{self.display_name} has no client id and secret configured"

    @asynccontextmanager
    async def session(self) -> AsyncIterator[aiohttp.ClientSession]:
        """A session for one fetch or refresh, made on the running loop.

        Per call, not per instance: Dramatiq runs actors on one event loop per worker thread, and
        a session is bound to the loop that made it.  ``total`` applies to each request.
        """
        reason = self.unavailable_reason
        if reason is not None:
            raise PermanentSyncError(reason)
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(timeout=timeout, headers=HEADERS) as http:
            yield http

    async def get_json(self, http: aiohttp.ClientSession, path: str, params: Mapping[str, str], token: str) -> JSON:
        """GET ``base_url + path`` with the bearer token; the decoded object, or an error per the table."""
        headers = {"Authorization": f"Bearer {token}"}
        async with translate_errors(self.id), http.get(self.base_url + path, params=params, headers=headers) as resp:
            await check(self.id, resp, self._secrets(token))
            return await read_json(self.id, resp)

    def access_token(self, tokens: dict[str, Any]) -> str:
        """The connection's bearer token; PermanentSyncError when it holds none."""
        token = tokens.get("access_token")
        if not isinstance(token, str) or not token:
            raise PermanentSyncError(f"{self.id}: the connection holds no access token")
        return token

    async def account_id(self, tokens: dict[str, Any], path: str, key: str) -> str:
        """The vendor's id for the account of ``tokens``: field ``key`` of the object at ``path``.
        Pushes name the account by it, so the OAuth callback stores it as provider_user_id."""
        token = self.access_token(tokens)
        async with self.session() as http:
            found = await self.get_json(http, path, {}, token)
        account = found.get(key)
        if isinstance(account, bool) or not isinstance(account, int | str) or account == "":
            raise TransientSyncError(f"{self.id} answered {path} without its {key}")
        return str(account)

    async def refresh(self, tokens: dict[str, Any]) -> dict[str, Any]:
        """New tokens from the refresh grant.  Rotating servers spend the old refresh token; one
        that sends none back keeps it valid, so it is kept."""
        refresh_token = tokens.get("refresh_token")
        if not refresh_token:
            raise RefreshFailedError(f"{self.id}: no refresh token stored; the user must reconnect")
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        found = await self._token_request(form, tokens.get("access_token"), refresh_token)
        return found if found.get("refresh_token") else found | {"refresh_token": refresh_token}

    async def exchange_code(self, code: str, redirect_uri: str, code_verifier: str | None = None) -> dict[str, Any]:
        """Tokens for an authorization code from the OAuth callback; ``code_verifier`` is the
        flow's RFC 7636 verifier when its authorize URL carried a challenge."""
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        if code_verifier is not None:
            form["code_verifier"] = code_verifier
        return await self._token_request(form, code, code_verifier)

    async def _token_request(self, form: dict[str, str], *secrets: str | None) -> dict[str, Any]:
        async with self.session() as http:
            assert self.oauth is not None  # session() refuses an unconfigured provider
            auth = None
            if self.oauth.basic_auth:
                auth = aiohttp.BasicAuth(self.oauth.client_id, self.oauth.client_secret)
            else:
                form = form | {"client_id": self.oauth.client_id, "client_secret": self.oauth.client_secret}
            async with translate_errors(self.id), http.post(self.oauth.token_url, data=form, auth=auth) as resp:
                await check(self.id, resp, self._secrets(*secrets, *form.values()), token_request=True)
                body = await read_json(self.id, resp)
        return token_dict(self.id, body)

    def _secrets(self, *extra: str | None) -> list[str | None]:
        return [*extra, self.oauth.client_secret if self.oauth else None]


def token_dict(provider: str, body: JSON, now: datetime | None = None) -> dict[str, Any]:
    """Our stored token shape from an RFC 6749 token response; ``expires_at`` is ISO 8601 UTC."""
    access = body.get("access_token")
    if not isinstance(access, str) or not access:
        raise TransientSyncError(f"{provider}: the token endpoint answered without an access token")
    tokens: dict[str, Any] = {"access_token": access, "refresh_token": body.get("refresh_token")}
    expires_in = body.get("expires_in")
    if isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
        tokens["expires_at"] = ((now or datetime.now(UTC)) + timedelta(seconds=float(expires_in))).isoformat()
    return tokens


async def _error_body(response: aiohttp.ClientResponse) -> JSON:
    try:
        text = await response.text(errors="replace")
    except (aiohttp.ClientError, TimeoutError):
        return {}
    try:
        found = json.loads(text)
    except ValueError:
        # A plain-text reason is worth keeping; an HTML error page is not.
        plain = text.strip()
        return {"detail": plain} if plain and not plain.startswith("<") else {}
    return found if isinstance(found, dict) else {}


def _describe(body: JSON) -> str:
    """The peer's explanation: RFC 7807 ``detail``/``title``, or RFC 6749 ``error_description``/``error``."""
    for key in ("detail", "error_description", "title", "message", "error"):
        value = body.get(key)
        if isinstance(value, str) and value.strip():
            return " ".join(value.split())
        if isinstance(value, list) and value:  # FastAPI-style validation errors: a list of objects
            return "; ".join(str(item.get("msg", item)) if isinstance(item, dict) else str(item) for item in value)
    return ""
