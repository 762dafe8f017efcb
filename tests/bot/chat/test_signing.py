"""Slack's request signing at the real endpoint: the published vector, and what gets a 401."""

from __future__ import annotations

import time
from urllib.parse import urlencode

from aiohttp.test_utils import TestClient
from slack_sdk.signature import SignatureVerifier

from tests.bot.chat.conftest import SECRET, Clinic, signed, slash
from tests.fakes.slack_api import FakeSlackApi

# reference §5.1: Slack's documented example, byte for byte.
VECTOR_BODY = (
    "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
    "&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
    "&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    "&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
VECTOR_TS = 1531420618
VECTOR_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"


class Clock:
    def __init__(self, now: float) -> None:
        self.value = now

    def now(self) -> float:
        return self.value


def test_the_published_slack_vector_signs_as_documented() -> None:
    assert len(VECTOR_BODY) == 362
    assert signed(VECTOR_BODY, timestamp=VECTOR_TS)["X-Slack-Signature"] == VECTOR_SIGNATURE
    headers = {"x-slack-request-timestamp": str(VECTOR_TS), "x-slack-signature": VECTOR_SIGNATURE}
    assert SignatureVerifier(SECRET, clock=Clock(VECTOR_TS + 299)).is_valid_request(VECTOR_BODY, headers)
    assert not SignatureVerifier(SECRET, clock=Clock(VECTOR_TS + 301)).is_valid_request(VECTOR_BODY, headers)
    assert not SignatureVerifier(SECRET, clock=Clock(VECTOR_TS)).is_valid_request(VECTOR_BODY + "x", headers)


async def test_the_published_vector_is_refused_at_the_endpoint_as_a_replay_from_2018(client: TestClient) -> None:
    response = await client.post("/slack/events", data=VECTOR_BODY, headers=signed(VECTOR_BODY, timestamp=VECTOR_TS))
    assert response.status == 401


async def test_a_correctly_signed_command_is_accepted(
    client: TestClient, slack_api: FakeSlackApi, clinic: Clinic
) -> None:
    sent = await slash(client, slack_api, clinic.team, clinic.patient.chat_user, "/help")
    assert sent.response.status == 200


def _body(clinic: Clinic) -> str:
    return urlencode({"team_id": clinic.team, "user_id": clinic.patient.chat_user, "command": "/help", "text": "",
                      "response_url": "http://127.0.0.1:9/none", "trigger_id": "1.2.3"})  # fmt: skip


async def test_a_tampered_body_gets_401(client: TestClient, clinic: Clinic) -> None:
    body = _body(clinic)
    response = await client.post("/slack/events", data=body.replace("help", "score"), headers=signed(body))
    assert response.status == 401
    assert await response.json() == {"error": "invalid request"}


async def test_a_stale_timestamp_gets_401(client: TestClient, clinic: Clinic) -> None:
    body = _body(clinic)
    response = await client.post("/slack/events", data=body, headers=signed(body, timestamp=int(time.time()) - 301))
    assert response.status == 401


async def test_a_wrong_secret_gets_401(client: TestClient, clinic: Clinic) -> None:
    body = _body(clinic)
    response = await client.post("/slack/events", data=body, headers=signed(body, secret="not-the-secret"))
    assert response.status == 401


async def test_a_request_without_signature_headers_gets_401(client: TestClient, clinic: Clinic) -> None:
    response = await client.post(
        "/slack/events", data=_body(clinic), headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.status == 401
