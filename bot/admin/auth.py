"""Who may use the console: sessions, login and logout, and the CSRF check on every POST.

Two ways in.  An admin-scope API key (``db/api_keys.authenticate``) makes a session bound to
the key's tenant: every page shows that tenant's rows only, and the deployment-wide pages
(queues, scheduler) are refused.  The deployment's ADMIN_PASSWORD makes a deployment-wide
session.  Without ADMIN_PASSWORD, password login is off; there is no default.

The cookie holds a random session id (only its hash is stored), HttpOnly, SameSite=Strict, and
Secure when PUBLIC_URL is https.  Every form carries the session's CSRF token in a hidden
``csrf`` field; a POST without it, or with another, is a 403.  The login form, made before any
session exists, is protected by a double-submit cookie instead.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable

from aiohttp import web

from bot.admin.keys import SESSION, SETTINGS
from bot.admin.render import denied, page
from bot.state import POOL
from db import admin_sessions, api_keys, audit

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

COOKIE = "cb_admin"
LOGIN_COOKIE = "cb_admin_login"
PATH = "/admin"
OPEN = frozenset({"/admin/login"})


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


@web.middleware
async def require_session(request: web.Request, handler: Handler) -> web.StreamResponse:
    """No session: a redirect to the login page.  A POST: its ``csrf`` field must match, else 403."""
    if request.path in OPEN:
        return await handler(request)
    session_id = request.cookies.get(COOKIE, "")
    session = None
    if session_id:
        async with request.config_dict[POOL].acquire() as conn:
            session = await admin_sessions.find(conn, session_id)
    if session is None:
        raise web.HTTPFound("/admin/login")
    request[SESSION] = session
    if request.method == "POST":
        form = await request.post()
        token = form.get("csrf")
        if not isinstance(token, str) or not _same(token, session.csrf_token):
            return denied(request, "This form has expired or did not come from this console (CSRF check failed).")
    return await handler(request)


def _cookie(response: web.StreamResponse, request: web.Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        path=PATH,
        max_age=max_age,
        httponly=True,
        samesite="Strict",
        secure=request.config_dict[SETTINGS].secure_cookies,
    )


async def login_form(request: web.Request, *, error: str = "", status: int = 200) -> web.Response:
    token = secrets.token_urlsafe(24)
    password_on = request.config_dict[SETTINGS].password is not None
    response = page(request, "login.html", status=status, login_csrf=token, error=error, password_on=password_on)
    _cookie(response, request, LOGIN_COOKIE, token, 3600)
    return response


async def login(request: web.Request) -> web.StreamResponse:
    """POST: a password or an admin API key in; a session cookie out, or the form again with 401."""
    form = await request.post()
    given, expected = form.get("csrf"), request.cookies.get(LOGIN_COOKIE, "")
    if not isinstance(given, str) or not expected or not _same(given, expected):
        return denied(request, "The login form has expired; open it again (CSRF check failed).")
    password, key = str(form.get("password") or ""), str(form.get("api_key") or "").strip()
    settings = request.config_dict[SETTINGS]
    async with request.config_dict[POOL].acquire() as conn:
        if key:
            found = await api_keys.authenticate(conn, key)
            if found is None or not found.allows("admin"):
                log.warning("admin console: refused an API key login from %s", request.remote)
                return await login_form(
                    request, error="That key is unknown, expired, revoked or not admin.", status=401
                )
            session_id, _ = await admin_sessions.create(conn, api_key_id=found.id, tenant_id=found.tenant_id)
            await audit.record(
                conn,
                tenant_id=found.tenant_id,
                actor=f"api_key:{found.prefix}",
                action="admin.login",
                subject_type="api_key",
                subject_id=found.id,
            )
            landing = "/admin/sync-runs"
        elif password:
            if settings.password is None:
                return await login_form(request, error="Password login is off: ADMIN_PASSWORD is not set.", status=401)
            if not _same(password, settings.password):
                log.warning("admin console: refused a password login from %s", request.remote)
                return await login_form(request, error="Wrong password.", status=401)
            session_id, _ = await admin_sessions.create(conn)
            await audit.record(
                conn,
                tenant_id=None,
                actor="admin:password",
                action="admin.login",
                subject_type="admin_session",
                subject_id=None,
            )
            landing = "/admin/queues"
        else:
            return await login_form(request, error="Paste an admin API key or enter the password.", status=401)
    response = web.HTTPSeeOther(landing)
    _cookie(response, request, COOKIE, session_id, int(admin_sessions.LIFETIME.total_seconds()))
    response.del_cookie(LOGIN_COOKIE, path=PATH)
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    session_id = request.cookies.get(COOKIE, "")
    async with request.config_dict[POOL].acquire() as conn:
        await admin_sessions.delete(conn, session_id)
    response = web.HTTPSeeOther("/admin/login")
    response.del_cookie(COOKIE, path=PATH)
    raise response


def actor(request: web.Request) -> str:
    """Who did it, for the audit trail: the key's id, or the password."""
    session = request[SESSION]
    return "admin:password" if session.api_key_id is None else f"admin:api_key:{session.api_key_id}"


def deployment_only(request: web.Request) -> web.Response | None:
    """A 403 page for a tenant-bound session on a page that spans every tenant; else None."""
    if request[SESSION].deployment_wide:
        return None
    return denied(request, "This page spans every tenant: log in with the deployment's admin password to see it.")
