"""What the API's handlers read from the app: its settings, the keyring, the declared routes."""

from __future__ import annotations

from aiohttp import web

from bot.api.openapi import Routes
from bot.api.settings import ApiSettings
from bot.settings import BotSettings
from db.sealing import Keyring

API_SETTINGS: web.AppKey[ApiSettings] = web.AppKey("api_settings", ApiSettings)
BOT_SETTINGS: web.AppKey[BotSettings] = web.AppKey("bot_settings", BotSettings)
KEYRING: web.AppKey[Keyring] = web.AppKey("keyring", Keyring)
ROUTES_DECLARED: web.AppKey[Routes] = web.AppKey("routes", Routes)


def limits(request: web.Request) -> ApiSettings:
    return request.app[API_SETTINGS]


def keyring(request: web.Request) -> Keyring:
    return request.app[KEYRING]


def public_url(request: web.Request) -> str:
    return request.app[BOT_SETTINGS].public_url
