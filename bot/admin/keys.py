"""What the admin sub-app holds for its handlers, and what a request carries once authenticated."""

from __future__ import annotations

from aiohttp import web

from bot.admin.settings import AdminSettings
from db.admin_sessions import AdminSession
from db.sealing import Keyring
from pipeline.settings import PipelineSettings

SETTINGS: web.AppKey[AdminSettings] = web.AppKey("admin_settings", AdminSettings)
KEYRING: web.AppKey[Keyring] = web.AppKey("admin_keyring", Keyring)
PIPELINE: web.AppKey[PipelineSettings] = web.AppKey("admin_pipeline", PipelineSettings)
SESSION: web.RequestKey[AdminSession] = web.RequestKey("admin_session", AdminSession)
