"""The destination guard: public https only, unless private destinations are allowed."""

from __future__ import annotations

import asyncio
import socket

import pytest

from channels.destinations import DestinationError, DestinationPolicy
from db.env import SettingError

STRICT, LOCAL = DestinationPolicy(), DestinationPolicy(allow_private=True)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://example.com/hook", "must use https"),
        ("ftp://example.com/hook", "must use https"),
        ("https:///nohost", "has no host"),
        ("https://user:pw@example.com/", "user name or password"),
        ("https://example.com:99999/", "not valid"),
        ("https://127.0.0.1/hook", "non-public address"),
        ("https://10.1.2.3/hook", "non-public address"),
        ("https://169.254.169.254/latest/meta-data", "non-public address"),
        ("https://[::1]/hook", "non-public address"),
        ("https://[fd00::1]/hook", "non-public address"),
        ("https://localhost/hook", "non-public address"),
        ("https://0.0.0.0/hook", "non-public address"),
        ("https://no-such-host.invalid/hook", "does not resolve"),
    ],
)
async def test_a_private_or_malformed_destination_is_refused(url: str, reason: str) -> None:
    with pytest.raises(DestinationError, match=reason) as caught:
        await STRICT.check(url)
    assert "hook" not in str(caught.value) and "meta-data" not in str(caught.value)  # no path echoed


async def test_a_public_address_passes() -> None:
    await STRICT.check("https://93.184.215.14/hook")  # a literal: no DNS needed


async def test_private_destinations_and_plain_http_are_allowed_when_asked() -> None:
    await LOCAL.check("http://127.0.0.1:8123/hook")
    with pytest.raises(DestinationError, match="must use https or http"):
        await LOCAL.check("ftp://127.0.0.1/hook")


def test_the_setting_takes_true_or_false_only() -> None:
    assert DestinationPolicy.from_env({}).allow_private is False
    assert DestinationPolicy.from_env({"CAREBEACON_ALLOW_PRIVATE_DESTINATIONS": "true"}).allow_private is True
    with pytest.raises(SettingError, match="CAREBEACON_ALLOW_PRIVATE_DESTINATIONS"):
        DestinationPolicy.from_env({"CAREBEACON_ALLOW_PRIVATE_DESTINATIONS": "yes"})


class CountingResolver:
    """Stands in for the running loop's getaddrinfo: counts lookups, answers after a moment."""

    def __init__(self, address: str) -> None:
        self.address, self.lookups = address, 0

    async def __call__(self, host: str, port: int, **_: object) -> list[tuple[object, ...]]:
        self.lookups += 1
        await asyncio.sleep(0.01)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (self.address, port))]


async def test_an_address_written_in_the_url_is_checked_without_a_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    resolver = CountingResolver("93.184.215.14")
    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", resolver)
    await STRICT.check("https://93.184.215.14/hook")
    with pytest.raises(DestinationError, match="non-public address"):
        await STRICT.check("https://[::ffff:169.254.169.254]/hook")
    assert resolver.lookups == 0


async def test_checks_of_one_host_at_once_share_one_lookup_and_each_runs_the_guard(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    resolver = CountingResolver("10.0.0.7")
    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", resolver)
    checks = [STRICT.check("https://hooks.example.org/a") for _ in range(5)]
    found = await asyncio.gather(*checks, return_exceptions=True)
    assert resolver.lookups == 1
    assert all(isinstance(f, DestinationError) and "non-public" in str(f) for f in found)
    # Nothing is kept once the lookup ends: the next check looks the host up again.
    resolver.address = "93.184.215.14"
    await STRICT.check("https://hooks.example.org/a")
    assert resolver.lookups == 2


async def test_a_check_that_gives_up_leaves_the_shared_lookup_to_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    resolver = CountingResolver("93.184.215.14")
    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", resolver)
    impatient = asyncio.create_task(STRICT.check("https://hooks.example.org/a"))
    patient = asyncio.create_task(STRICT.check("https://hooks.example.org/a"))
    await asyncio.sleep(0)
    impatient.cancel()
    await patient
    assert resolver.lookups == 1 and impatient.cancelled()
