"""Proving a chat identity in the browser: the platform's OpenID Connect / OAuth ``identify``.

A proof has two halves: where to send the browser (``authorize_url``) and what the returned
code proves (``prove``: the workspace and user id, checked against the nonce we sent).
``bot.chat.link`` looks proofs up by platform: Sign in with Slack, and Discord OAuth2 ``identify``.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlencode

import aiohttp
import asyncpg
from slack_sdk.errors import SlackApiError

from bot.discord.settings import DiscordSettings
from bot.slack.app import web_client
from bot.slack.settings import OIDC_SCOPES, SlackSettings


class ProofFailed(Exception):
    """The platform did not prove an identity (bad code, nonce mismatch, an error)."""


@dataclass(frozen=True, slots=True)
class Proven:
    workspace_id: str
    user_id: str


class IdentityProof(Protocol):
    def authorize_url(self, *, state: str, nonce: str, workspace_id: str, redirect_uri: str) -> str: ...

    async def prove(self, *, code: str, nonce: str, redirect_uri: str) -> Proven: ...


@dataclass(frozen=True, slots=True)
class SlackOidc:
    """Sign in with Slack (OpenID Connect): ``/openid/connect/authorize`` → ``openid.connect.token``
    → ``openid.connect.userInfo``.  The id_token comes straight from Slack's token endpoint over
    TLS, so its claims are read without verifying its signature (OIDC Core §3.1.3.7, item 6);
    its nonce and audience are checked, and must agree with userInfo."""

    settings: SlackSettings = field(repr=False)

    def authorize_url(self, *, state: str, nonce: str, workspace_id: str, redirect_uri: str) -> str:
        query = {
            "response_type": "code", "scope": " ".join(OIDC_SCOPES), "client_id": self.settings.client_id or "",
            "state": state, "nonce": nonce, "team": workspace_id, "redirect_uri": redirect_uri,
        }  # fmt: skip
        return f"{self.settings.authorize_url}/openid/connect/authorize?{urlencode(query)}"

    async def prove(self, *, code: str, nonce: str, redirect_uri: str) -> Proven:
        client = web_client(self.settings)
        try:
            token = await client.openid_connect_token(
                client_id=self.settings.client_id or "",
                client_secret=self.settings.client_secret or "",
                code=code,
                redirect_uri=redirect_uri,
            )
            claims = _claims(str(token.get("id_token", "")))
            info = await web_client(self.settings, str(token["access_token"])).openid_connect_userInfo()
        except (SlackApiError, KeyError) as exc:
            raise ProofFailed(f"Slack refused the sign-in ({type(exc).__name__})") from exc
        if claims.get("nonce") != nonce or claims.get("aud") != self.settings.client_id:
            raise ProofFailed("the sign-in answer does not belong to this link")
        user, team = info.get("https://slack.com/user_id"), info.get("https://slack.com/team_id")
        if not user or not team or (user, team) != (claims.get("https://slack.com/user_id"),
                                                   claims.get("https://slack.com/team_id")):  # fmt: skip
            raise ProofFailed("Slack's sign-in answers disagree")
        return Proven(str(team), str(user))


@dataclass(frozen=True, slots=True)
class DiscordIdentify:
    """Discord OAuth2 with the ``identify`` scope: ``/oauth2/authorize`` → ``/oauth2/token`` →
    ``/users/@me``, which proves the Discord user.

    Discord's OAuth2 is not OpenID Connect: there is no id_token, so no nonce to check (the
    state cookie binds the browser, and the code is single-use and bound to our redirect URI
    and client secret).  ``identify`` proves the *user*, whose snowflake is global, and no
    guild.  The guild we report is the one of that user's own live link token: a forwarded
    link (made by another user) then never matches, and is refused as for Slack.  Should the
    proven user hold live links from two guilds at once, the newest one is reported, so an
    older one fails safe (refused, to be asked for again)."""

    settings: DiscordSettings = field(repr=False)
    pool: asyncpg.Pool = field(repr=False)

    def authorize_url(self, *, state: str, nonce: str, workspace_id: str, redirect_uri: str) -> str:
        query = {
            "response_type": "code", "scope": "identify", "client_id": self.settings.application_id or "",
            "state": state, "redirect_uri": redirect_uri, "prompt": "consent",
        }  # fmt: skip
        return f"{self.settings.authorize_url}?{urlencode(query)}"

    async def prove(self, *, code: str, nonce: str, redirect_uri: str) -> Proven:
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        pair = f"{self.settings.application_id or ''}:{self.settings.client_secret or ''}"
        basic = {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}
        api = self.settings.api_url
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
                async with http.post(f"{api}/oauth2/token", data=form, headers=basic) as response:
                    token = await response.json(content_type=None) if response.status == 200 else {}
                if "identify" not in str(token.get("scope", "")).split() or not token.get("access_token"):
                    raise ProofFailed("Discord refused the sign-in")
                bearer = {"Authorization": f"Bearer {token['access_token']}"}
                async with http.get(f"{api}/users/@me", headers=bearer) as response:
                    user = await response.json(content_type=None) if response.status == 200 else {}
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ProofFailed(f"Discord did not answer the sign-in ({type(exc).__name__})") from exc
        user_id = str(user.get("id", "")) if isinstance(user, dict) else ""
        if not user_id.isdigit():
            raise ProofFailed("Discord's answer names no user")
        async with self.pool.acquire() as conn:
            guild = await conn.fetchval(
                "SELECT workspace_id FROM chat_link_tokens WHERE platform = 'discord' AND chat_user_id = $1"
                " AND used_at IS NULL AND expires_at > now() ORDER BY created_at DESC LIMIT 1",
                user_id,
            )
        return Proven(str(guild or ""), user_id)


def _claims(id_token: str) -> dict[str, Any]:
    try:
        payload = id_token.split(".")[1]
        found: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError) as exc:
        raise ProofFailed("no id_token in Slack's answer") from exc
    return found
