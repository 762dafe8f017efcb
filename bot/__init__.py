"""Front ends: the CLI and the aiohttp web app (chat, webhooks and the REST API mount here)."""

__all__ = ["BotSettings", "main", "make_app"]

from bot.app import make_app
from bot.cli import main
from bot.settings import BotSettings
