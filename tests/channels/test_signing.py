"""Standard Webhooks signing: the spec's published vector, rotation, and the official library as verifier."""

from __future__ import annotations

import base64
import time

import pytest
from standardwebhooks.webhooks import Webhook as OfficialVerifier

from channels.signing import SecretError, decode_secret, sign, verify

# Published with the spec's reference libraries (python tests' test_sign_function, go webhook_test.go).
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID, TIMESTAMP, BODY = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
EXPECTED = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
OTHER = "whsec_" + base64.b64encode(b"k" * 32).decode()


def test_the_published_test_vector() -> None:
    assert sign(SECRET, MSG_ID, TIMESTAMP, BODY) == EXPECTED


def test_the_vector_verifies_and_near_misses_do_not() -> None:
    now = TIMESTAMP + 10
    assert verify(SECRET, MSG_ID, str(TIMESTAMP), BODY, EXPECTED, now=now)
    assert verify(SECRET, MSG_ID, str(TIMESTAMP), BODY, "v2,abc " + EXPECTED, now=now)  # other versions ignored
    assert not verify(SECRET, MSG_ID, str(TIMESTAMP), BODY, EXPECTED[:-2] + "A=", now=now)
    assert not verify(SECRET, MSG_ID, str(TIMESTAMP), BODY + b" ", EXPECTED, now=now)
    assert not verify(SECRET, MSG_ID, str(TIMESTAMP), BODY, EXPECTED, now=TIMESTAMP + 301)
    assert not verify(SECRET, MSG_ID, str(TIMESTAMP), BODY, EXPECTED, now=TIMESTAMP - 301)
    for bad in ("161426533.0", "-161426533", "invalid timestamp"):
        assert not verify(SECRET, MSG_ID, bad, BODY, EXPECTED, now=now)


def test_an_unpadded_secret_is_accepted() -> None:
    padded = "whsec_" + base64.b64encode(b"x" * 25).decode()
    assert padded.endswith("=") and decode_secret(padded.rstrip("=")) == b"x" * 25


def test_rotation_signs_once_per_secret_and_either_key_verifies() -> None:
    header = sign([SECRET, OTHER], MSG_ID, TIMESTAMP, BODY)
    first, second = header.split(" ")
    assert first == EXPECTED and second.startswith("v1,")
    assert verify(OTHER, MSG_ID, str(TIMESTAMP), BODY, header, now=TIMESTAMP)


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "must start with 'whsec_'"),
        ("whsec_not base64!", "must be base64"),
        ("whsec_" + base64.b64encode(b"short").decode(), "24 to 64 bytes"),
    ],
)
def test_a_malformed_secret_is_refused_without_echoing_it(secret: str, message: str) -> None:
    with pytest.raises(SecretError, match=message) as caught:
        sign(secret, MSG_ID, TIMESTAMP, BODY)
    assert secret.removeprefix("whsec_") not in str(caught.value)


def test_a_dot_in_the_id_is_refused() -> None:
    with pytest.raises(ValueError, match="must not contain"):
        sign(SECRET, "msg.1", TIMESTAMP, BODY)


@pytest.mark.parametrize("secrets", [[SECRET], [OTHER, SECRET]])
def test_the_official_library_accepts_our_signatures(secrets: list[str]) -> None:
    timestamp = int(time.time())
    headers = {
        "webhook-id": "msg_alert_7_3",
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secrets, "msg_alert_7_3", timestamp, BODY),
    }
    assert OfficialVerifier(SECRET).verify(BODY, headers) == {"test": 2432232314}
