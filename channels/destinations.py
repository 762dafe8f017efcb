"""Where a channel may send: the guard against server-side request forgery.

A channel's URL comes from a tenant, so without a guard a care team could make our workers
call the metadata service or a database port inside our network.  A destination must be
https and resolve only to public addresses.  The check runs when a channel is created and
again before every send, because DNS can change in between.

``CAREBEACON_ALLOW_PRIVATE_DESTINATIONS=true`` lifts both limits, for local development and
tests whose peers listen on 127.0.0.1 over plain http.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from channels.errors import ConfigError
from db import env as envlib

ALLOW_PRIVATE = "CAREBEACON_ALLOW_PRIVATE_DESTINATIONS"


class DestinationError(ConfigError):
    """A destination we will not send to; the message names the host, never the full URL."""


@dataclass(frozen=True, slots=True)
class DestinationPolicy:
    allow_private: bool = False

    @classmethod
    def from_env(cls, env: envlib.Env) -> DestinationPolicy:
        value = envlib.choice(env, ALLOW_PRIVATE, "false", ("true", "false"))
        return cls(allow_private=value == "true")

    def check_url(self, url: str) -> tuple[str, int]:
        """The URL's host and port, when its form is acceptable; no DNS.  Raises DestinationError."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise DestinationError("the URL is not valid") from None
        schemes = ("https", "http") if self.allow_private else ("https",)
        if parts.scheme not in schemes:
            raise DestinationError(f"the URL must use {' or '.join(schemes)}")
        if not parts.hostname:
            raise DestinationError("the URL has no host")
        if parts.username or parts.password:
            raise DestinationError("the URL must not carry a user name or password")
        return parts.hostname, port or (443 if parts.scheme == "https" else 80)

    async def check(self, url: str) -> None:
        """Refuse ``url`` unless every address its host resolves to is public.  Raises DestinationError."""
        host, port = self.check_url(url)
        if self.allow_private:
            return
        try:
            # An address written as one needs no lookup: getaddrinfo would hand it back unchanged.
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            try:
                addresses = [ipaddress.ip_address(found) for found in await _resolve(host, port)]
            except socket.gaierror:
                raise DestinationError(f"the host {host!r} does not resolve") from None
        for address in addresses:
            if not address.is_global or address.is_multicast:
                raise DestinationError(f"the host {host!r} resolves to a non-public address")


# Lookups in flight, per event loop, host and port.  A batch sends to one integrator's host many
# times at once: those checks share the one lookup under way (each still waits for its answer)
# instead of each taking a thread of the resolver pool.  Nothing is kept once a lookup ends.
_lookups: dict[tuple[asyncio.AbstractEventLoop, str, int], asyncio.Task[list[str]]] = {}


async def _resolve(host: str, port: int) -> list[str]:
    """The host's addresses, from the lookup under way for it or a new one.  Raises gaierror."""
    loop = asyncio.get_running_loop()
    key = (loop, host, port)
    lookup = _lookups.get(key)
    if lookup is None:
        lookup = _lookups[key] = loop.create_task(_lookup(host, port))
        lookup.add_done_callback(lambda done: _forget(key, done))
    # Shielded: a caller that gives up (a time limit) does not cancel the lookup the others wait for.
    return await asyncio.shield(lookup)


async def _lookup(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _forget(key: tuple[asyncio.AbstractEventLoop, str, int], lookup: asyncio.Task[list[str]]) -> None:
    _lookups.pop(key, None)
    if not lookup.cancelled():
        lookup.exception()  # read here, so a failure whose callers all gave up is not reported as unseen
