"""``POST /discord/interactions``: the signature is checked over the raw body before anything
is parsed; then the initial response is written and flushed *before* the follow-up work
starts, so Discord has the deferral before we PATCH the reply it defers."""

from __future__ import annotations

import json
import logging

from aiohttp import web

from bot.discord.handler import Interactions
from bot.discord.interaction import Incoming
from bot.discord.verify import Verifier

log = logging.getLogger(__name__)
INTERACTIONS: web.AppKey[Interactions] = web.AppKey("discord_interactions", Interactions)
VERIFIER: web.AppKey[Verifier] = web.AppKey("discord_verifier", Verifier)


async def interactions(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    verifier = request.app[VERIFIER]
    headers = request.headers
    if not verifier.valid(headers.get("X-Signature-Ed25519"), headers.get("X-Signature-Timestamp"), body):
        return _unauthorised("invalid request signature")
    try:
        incoming = Incoming.from_json(json.loads(body))
    except ValueError:
        return web.json_response({"error": "not an interaction"}, status=400)
    if incoming.id and not verifier.first_time(incoming.id):
        log.warning("discord interaction %s replayed: refused", incoming.id)
        return _unauthorised("replayed interaction")
    handler = request.app[INTERACTIONS]
    initial, later = await handler.handle(incoming)
    response = web.json_response(initial)
    if later is not None:
        await response.prepare(request)
        await response.write_eof()
        handler.spawn(later)
    return response


def _unauthorised(why: str) -> web.Response:
    return web.json_response({"error": why}, status=401)
