"""The destination guard: public https only, unless private destinations are allowed."""

from __future__ import annotations

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
