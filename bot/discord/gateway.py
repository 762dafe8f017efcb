"""Gateway mode: discord.py receives interactions over the gateway (no public URL needed) and
hands them to the same ``Interactions`` handlers as the HTTP endpoint.

discord.py cannot serve an HTTP interactions endpoint, and the two deliveries are mutually
exclusive: with an Interactions Endpoint URL set in the Developer Portal, the gateway gets
nothing (discord.py warns at login).  Clear it to use this mode.  No command tree is used:
commands are registered by ``carebeacon discord-register``, and every interaction arrives at
``on_interaction`` as it is.  Gateway interactions are always answered over HTTP: the
initial response goes to the callback endpoint, then the follow-up work runs as over HTTP.
"""

from __future__ import annotations

import logging

import discord

from bot.discord.handler import Interactions
from bot.discord.interaction import Incoming, Type
from bot.discord.rest import DiscordApiError, DiscordRest

log = logging.getLogger(__name__)


class Gateway(discord.Client):
    def __init__(self, interactions: Interactions, rest: DiscordRest) -> None:
        # Interactions need no privileged (or any) intents.
        super().__init__(intents=discord.Intents.none())
        self.interactions, self.rest = interactions, rest

    async def on_ready(self) -> None:
        log.info("Discord gateway connected as %s", self.user)

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        await relay(self.interactions, self.rest, incoming(interaction))

    async def close(self) -> None:
        await self.interactions.close()
        await self.rest.close()
        await super().close()


def incoming(interaction: discord.Interaction) -> Incoming:
    """The handlers' view of a discord.py interaction, from its public attributes."""
    return Incoming(
        str(interaction.id),
        int(interaction.type.value),
        interaction.token,
        str(interaction.application_id),
        str(interaction.guild_id or ""),
        str(interaction.user.id),
        str(interaction.channel_id) if interaction.channel_id else None,
        dict(interaction.data or {}),
    )


async def relay(interactions: Interactions, rest: DiscordRest, found: Incoming) -> None:
    """Handle one gateway interaction: the initial response by callback, then the rest."""
    if found.type == Type.PING:
        return  # only the HTTP endpoint is pinged
    initial, later = await interactions.handle(found)
    try:
        await rest.callback(found.id, found.token, initial)
    except DiscordApiError as exc:
        log.warning("discord interaction %s not acknowledged: %s", found.id, exc)
        if later is not None:
            later.close()
        return
    if later is not None:
        interactions.spawn(later)
