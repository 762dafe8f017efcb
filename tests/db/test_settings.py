"""Settings read from a dict: bad values fail naming the variable, secrets never show."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from bot.settings import BotSettings
from db.env import Env, SettingError
from db.sealing import KEYS_VARIABLE, Keyring
from db.services import open_services
from db.settings import DbSettings
from pipeline.logs import configure_logging
from pipeline.settings import PipelineSettings
from tests.conftest import Servers

PASSWORD = "hunter2-s3cret"

Reader = Callable[[Env], object]

INVALID = [
    # (reader, env, variable named, what the message says it expects)
    (DbSettings.from_env, {"DATABASE_URL": "mysql://x"}, "DATABASE_URL", "a URL starting with postgres://"),
    (DbSettings.from_env, {"DATABASE_URL": "localhost:5432/db"}, "DATABASE_URL", "postgresql://"),
    (DbSettings.from_env, {"DB_POOL_MAX": "abc"}, "DB_POOL_MAX", "an integer >= 2 and <= 200"),
    (DbSettings.from_env, {"DB_POOL_MAX": "1"}, "DB_POOL_MAX", "an integer >= 2 and <= 200"),
    (DbSettings.from_env, {"DB_POOL_MAX": "201"}, "DB_POOL_MAX", "an integer >= 2 and <= 200"),
    (DbSettings.from_env, {KEYS_VARIABLE: "nocolon"}, KEYS_VARIABLE, "id:base64key"),
    (PipelineSettings.from_env, {"REDIS_URL": "http://x"}, "REDIS_URL", "redis:// or rediss:// or unix://"),
    (
        PipelineSettings.from_env,
        {"SYNC_LOOKBACK_DAYS": "0"},
        "SYNC_LOOKBACK_DAYS",
        "an integer >= 1 and <= 90",
    ),
    (PipelineSettings.from_env, {"SYNC_FIRST_DAYS": "366"}, "SYNC_FIRST_DAYS", "an integer >= 1 and <= 365"),
    (PipelineSettings.from_env, {"SYNC_INTERVAL_MINUTES": "-5"}, "SYNC_INTERVAL_MINUTES", "an integer >= 1"),
    (
        PipelineSettings.from_env,
        {"SYNC_STALE_AFTER_SECONDS": "10"},
        "SYNC_STALE_AFTER_SECONDS",
        "an integer >= 30",
    ),
    (BotSettings.from_env, {"PORT": "70000"}, "PORT", "an integer >= 0 and <= 65535"),
    (BotSettings.from_env, {"PORT": "80.5"}, "PORT", "an integer >= 0 and <= 65535"),
    (
        BotSettings.from_env,
        {"PUBLIC_URL": "ftp://x"},
        "PUBLIC_URL",
        "a URL starting with http:// or https://",
    ),
    (configure_logging, {"LOG_LEVEL": "LOUD"}, "LOG_LEVEL", "one of DEBUG, INFO, WARNING, ERROR"),
]


@pytest.mark.parametrize(
    ("read", "env", "variable", "expected"),
    INVALID,
    ids=[f"{next(iter(env))}={next(iter(env.values()))}" for _, env, _, _ in INVALID],
)
def test_an_invalid_value_raises_a_setting_error_that_names_the_variable_and_what_it_expects(
    read: Reader, env: dict[str, str], variable: str, expected: str
) -> None:
    with pytest.raises(SettingError) as caught:
        read(env)

    assert caught.value.name == variable
    assert str(caught.value).startswith(f"{variable}: expected ")
    assert expected in str(caught.value)


def test_an_empty_environment_gives_the_documented_defaults() -> None:
    db = DbSettings.from_env({})
    pipeline = PipelineSettings.from_env({})
    bot = BotSettings.from_env({})

    assert (db.database_url, db.seal_keys, db.data_dir, db.pool_max) == (
        None,
        None,
        Path(".carebeacon").absolute(),
        10,
    )
    assert pipeline == PipelineSettings(
        redis_url=None,
        first_sync_days=30,
        sync_overlap=timedelta(hours=1),
        daily_lookback_days=7,
        sync_interval=timedelta(minutes=15),
        reconcile_after=timedelta(minutes=2),
        stale_after=timedelta(minutes=10),
    )
    assert bot == BotSettings(host="127.0.0.1", port=8080, public_url="http://127.0.0.1:8080")


def test_blank_values_count_as_unset() -> None:
    blank = {"DATABASE_URL": "  ", "DB_POOL_MAX": "", "REDIS_URL": " ", "PORT": "\t", "PUBLIC_URL": ""}

    assert DbSettings.from_env(blank) == DbSettings.from_env({})
    assert PipelineSettings.from_env(blank) == PipelineSettings.from_env({})
    assert BotSettings.from_env(blank) == BotSettings.from_env({})


def test_valid_values_are_read_and_the_public_url_loses_its_trailing_slash(tmp_path: Path) -> None:
    entry = Keyring.new_entry("k1")
    db = DbSettings.from_env(
        {
            "DATABASE_URL": "postgresql://app@db/carebeacon",
            KEYS_VARIABLE: entry,
            "CAREBEACON_DATA_DIR": str(tmp_path),
            "DB_POOL_MAX": "25",
        }
    )
    bot = BotSettings.from_env({"HOST": "0.0.0.0", "PORT": "9000", "PUBLIC_URL": "https://care.example/"})

    assert db.database_url == "postgresql://app@db/carebeacon"
    assert db.seal_keys == Keyring.parse(entry)
    assert (db.data_dir, db.pool_max) == (tmp_path, 25)
    assert bot == BotSettings(host="0.0.0.0", port=9000, public_url="https://care.example")


def test_the_seal_keys_can_come_from_a_file_named_by_the_file_variable(tmp_path: Path) -> None:
    entry = Keyring.new_entry("fromfile")
    secret = tmp_path / "seal-keys"
    secret.write_text(entry + "\n")

    settings = DbSettings.from_env({f"{KEYS_VARIABLE}_FILE": str(secret)})

    assert settings.seal_keys == Keyring.parse(entry)
    assert settings.seal_keys.current_kid == "fromfile"


def test_the_variable_itself_wins_over_its_file(tmp_path: Path) -> None:
    secret = tmp_path / "seal-keys"
    secret.write_text(Keyring.new_entry("fromfile"))

    settings = DbSettings.from_env({KEYS_VARIABLE: Keyring.new_entry("direct"), f"{KEYS_VARIABLE}_FILE": str(secret)})

    assert settings.seal_keys is not None and settings.seal_keys.current_kid == "direct"


def test_a_file_variable_pointing_nowhere_raises_a_setting_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-file"

    with pytest.raises(SettingError) as caught:
        DbSettings.from_env({f"{KEYS_VARIABLE}_FILE": str(missing)})

    assert caught.value.name == f"{KEYS_VARIABLE}_FILE"
    assert str(caught.value).startswith(f"{KEYS_VARIABLE}_FILE: expected a readable file")
    assert str(missing) in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        f"mysql://carebeacon:{PASSWORD}@db.internal:3306/app",
        f"carebeacon:{PASSWORD}@db.internal:5432/app",
        f"postgres:/carebeacon:{PASSWORD}@db.internal/app",
        f"carebeacon:{PASSWORD}@db.internal/app?sslrootcert=file:///ca.pem",
    ],
    ids=["wrong scheme", "no scheme", "one slash", "scheme-like text later"],
)
def test_a_rejected_database_url_is_not_echoed_with_its_password(url: str) -> None:
    with pytest.raises(SettingError) as caught:
        DbSettings.from_env({"DATABASE_URL": url})

    assert caught.value.name == "DATABASE_URL"
    assert PASSWORD not in str(caught.value)
    assert "db.internal" not in str(caught.value)


def test_the_repr_of_settings_shows_neither_urls_with_passwords_nor_keys() -> None:
    entry = Keyring.new_entry("k1")
    db = DbSettings.from_env(
        {"DATABASE_URL": f"postgresql://carebeacon:{PASSWORD}@db.internal/app", KEYS_VARIABLE: entry}
    )
    pipeline = PipelineSettings.from_env({"REDIS_URL": f"redis://:{PASSWORD}@cache.internal:6379/0"})

    for shown in (repr(db), str(db), repr(pipeline)):
        assert PASSWORD not in shown
        assert "internal" not in shown
    assert entry.split(":", 1)[1] not in repr(db)
    assert "'k1'" in repr(db)


def test_open_services_refuses_a_database_url_without_seal_keys_and_starts_nothing(
    servers: Servers, data_dir: Path
) -> None:
    settings = DbSettings.from_env({"DATABASE_URL": servers.database_url, "CAREBEACON_DATA_DIR": str(data_dir)})

    with pytest.raises(SettingError) as caught:
        open_services(settings, servers.redis_url)

    assert caught.value.name == KEYS_VARIABLE
    assert "DATABASE_URL is set" in str(caught.value)
    assert not data_dir.exists()
