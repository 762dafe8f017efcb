"""The Standard Webhooks spec's published vector, checked against our signer, the official
library and the `carebeacon webhooks verify` command."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from bot.cli import main
from channels.signing import sign, verify
from db.webhooks import new_secret

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TIMESTAMP = 1614265330
BODY = b'{"test": 2432232314}'
EXPECTED = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_the_spec_vector_signs_to_the_published_signature() -> None:
    assert sign(SECRET, MSG_ID, TIMESTAMP, BODY) == EXPECTED
    official = Webhook(SECRET).sign(MSG_ID, datetime.fromtimestamp(TIMESTAMP, UTC), BODY.decode())
    assert official == EXPECTED


def test_during_rotation_each_secret_signs_and_either_one_verifies() -> None:
    other = new_secret()
    header = sign([other, SECRET], MSG_ID, TIMESTAMP, BODY)

    assert header.split(" ")[1] == EXPECTED
    assert verify(SECRET, MSG_ID, str(TIMESTAMP), BODY, header, now=TIMESTAMP)
    assert verify(other, MSG_ID, str(TIMESTAMP), BODY, header, now=TIMESTAMP)


def test_a_new_secret_is_whsec_base64_of_32_bytes_the_official_library_accepts() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_") and secret != new_secret()
    Webhook(secret)  # raises on a malformed secret


@pytest.mark.parametrize(
    ("signature", "extra", "printed", "code"),
    [
        (EXPECTED, ["--ignore-age"], "valid", 0),
        ("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=", ["--ignore-age"], "invalid", 1),
        ("v2,abc " + EXPECTED, ["--ignore-age"], "valid", 0),
        # Without --ignore-age a request from 2021 is far outside the five-minute tolerance.
        (EXPECTED, [], "invalid", 1),
    ],
)
def test_the_verify_command_prints_valid_or_invalid_and_exits_accordingly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], signature: str, extra: list[str], printed: str, code: int
) -> None:
    body = tmp_path / "body.json"
    body.write_bytes(BODY)
    argv = ["webhooks", "verify", "--secret", SECRET, "--id", MSG_ID, "--timestamp", str(TIMESTAMP)]
    argv += ["--signature", signature, "--body-file", str(body), *extra]

    assert main(argv) == code
    assert capsys.readouterr().out.strip() == printed
