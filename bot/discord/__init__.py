"""The Discord front end: an HTTP interactions endpoint over the command core.

Routes: ``POST /discord/interactions`` (Ed25519-verified; PING, slash commands, alert
buttons).  ``carebeacon discord-register`` registers the commands, and ``carebeacon
discord-gateway`` serves the same handlers over discord.py's gateway where there is no
public URL.  Without DISCORD_PUBLIC_KEY, DISCORD_APPLICATION_ID and DISCORD_BOT_TOKEN the
front end is off, and ``setup`` logs why.
"""

from __future__ import annotations

__all__ = ["DiscordRest", "DiscordSettings", "Interactions", "application_commands", "setup"]

import logging

from aiohttp import web

from bot.discord.endpoint import INTERACTIONS, VERIFIER, interactions
from bot.discord.handler import Interactions
from bot.discord.registration import application_commands
from bot.discord.rest import DiscordRest
from bot.discord.settings import DiscordSettings
from bot.discord.verify import Verifier
from bot.state import POOL
from db.sealing import Keyring

log = logging.getLogger(__name__)


def setup(app: web.Application, settings: DiscordSettings, *, keyring: Keyring, public_url: str) -> bool:
    """Mount ``/discord/interactions`` on ``app`` (which holds the pool); False, logged, when off."""
    if settings.off_reason is not None:
        log.info("Discord front end is off: %s", settings.off_reason)
        return False
    assert settings.public_key is not None
    rest = DiscordRest(settings)
    handler = Interactions(app[POOL], keyring, public_url, rest)
    app[INTERACTIONS], app[VERIFIER] = handler, Verifier(settings.public_key)
    app.router.add_post("/discord/interactions", interactions)

    async def close(_: web.Application) -> None:
        await handler.close()
        await rest.close()

    app.on_cleanup.append(close)
    log.info("Discord front end is on at /discord/interactions")
    return True
