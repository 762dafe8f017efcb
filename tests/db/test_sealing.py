"""Sealing secrets at rest: the keyring on its own, then sealed columns on a real, migrated database."""

from __future__ import annotations

import base64

import asyncpg
import pytest

from db import connections, notification_channels, tenants
from db.env import SettingError
from db.reseal import SEALED_COLUMNS, reseal
from db.sealing import KEYS_VARIABLE, Keyring, SealError

WHERE = {"table": "connections", "column": "tokens_sealed", "row_id": 7}
SECRET = b"refresh-token-do-not-leak"
# Fixed key material, so a test can look for it in messages and reprs.
KEY_A = bytes(range(32))
KEY_B = bytes(range(100, 132))
KEY_A_TEXT = base64.urlsafe_b64encode(KEY_A).decode()
KEY_B_TEXT = base64.urlsafe_b64encode(KEY_B).decode()


def ring(*kids: str) -> Keyring:
    material = {"A": KEY_A_TEXT, "B": KEY_B_TEXT}
    return Keyring.parse(",".join(f"{kid}:{material[kid]}" for kid in kids))


def flip_body_char(sealed: str) -> str:
    """The sealed value with one base64 character in the middle of its body changed."""
    head, _, body = sealed.rpartition(".")
    middle = len(body) // 2
    swapped = "B" if body[middle] == "A" else "A"
    return f"{head}.{body[:middle]}{swapped}{body[middle + 1 :]}"


# --- the keyring alone -----------------------------------------------------------------------------


def test_a_sealed_value_opens_to_the_same_bytes_and_does_not_contain_them() -> None:
    keyring = ring("A")

    sealed = keyring.seal(SECRET, **WHERE)

    assert sealed.startswith("cb1.A.")
    assert SECRET.decode() not in sealed
    assert keyring.open(sealed, **WHERE) == SECRET


def test_sealing_the_same_value_twice_gives_different_text() -> None:
    keyring = ring("A")

    assert keyring.seal(SECRET, **WHERE) != keyring.seal(SECRET, **WHERE)


def test_json_round_trips_through_seal_json_and_open_json() -> None:
    keyring = ring("A")
    tokens = {"access_token": "at-1", "expires_in": 3600, "scopes": ["sleep", "heart"]}

    assert keyring.open_json(keyring.seal_json(tokens, **WHERE), **WHERE) == tokens


def test_a_value_sealed_under_an_old_key_opens_after_a_new_key_is_put_first() -> None:
    old_value = ring("A").seal(SECRET, **WHERE)
    rotated = ring("B", "A")

    new_value = rotated.seal(SECRET, **WHERE)

    assert rotated.open(old_value, **WHERE) == SECRET
    assert new_value.startswith("cb1.B.")
    assert rotated.current_kid == "B"
    assert rotated.is_current(new_value)
    assert not rotated.is_current(old_value)


def test_a_value_with_one_body_character_changed_fails_to_open() -> None:
    keyring = ring("A")
    sealed = keyring.seal(SECRET, **WHERE)

    with pytest.raises(SealError, match="failed to open"):
        keyring.open(flip_body_char(sealed), **WHERE)


def test_a_value_whose_key_id_is_edited_fails_to_open_even_under_identical_key_bytes() -> None:
    # Both ids hold the same key, so only the key id in the associated data can catch the edit.
    keyring = Keyring.parse(f"A:{KEY_A_TEXT},B:{KEY_A_TEXT}")
    sealed = keyring.seal(SECRET, **WHERE)

    relabelled = sealed.replace("cb1.A.", "cb1.B.", 1)

    with pytest.raises(SealError, match="failed to open"):
        keyring.open(relabelled, **WHERE)


@pytest.mark.parametrize(
    "moved",
    [
        {"row_id": 8},
        {"column": "refresh_sealed"},
        {"table": "notification_channels"},
    ],
    ids=["another row", "another column", "another table"],
)
def test_a_value_opened_for_another_row_column_or_table_fails(moved: dict[str, object]) -> None:
    keyring = ring("A")
    sealed = keyring.seal(SECRET, **WHERE)

    with pytest.raises(SealError, match="failed to open"):
        keyring.open(sealed, **(WHERE | moved))  # type: ignore[arg-type]


def test_a_value_sealed_under_an_unknown_key_names_the_key_id_but_not_the_plaintext() -> None:
    sealed = ring("A").seal(SECRET, **WHERE)

    with pytest.raises(SealError) as caught:
        ring("B").open(sealed, **WHERE)

    message = str(caught.value)
    assert "'A'" in message and KEYS_VARIABLE in message
    assert SECRET.decode() not in message
    assert KEY_A_TEXT not in message and KEY_B_TEXT not in message


@pytest.mark.parametrize(
    "text",
    ["plain text", "cb2.A.AAAA", "cb1.A", "cb1.A.AAAA.AAAA"],
    ids=["plain", "version", "short", "long"],
)
def test_text_that_is_not_a_sealed_value_fails_to_open(text: str) -> None:
    with pytest.raises(SealError, match="not a sealed value"):
        ring("A").open(text, **WHERE)


SHORT_KEY = base64.urlsafe_b64encode(bytes(16)).decode()
LONG_KEY = base64.urlsafe_b64encode(bytes(64)).decode()

BAD_KEYS = [
    # (CAREBEACON_SEAL_KEYS, what the message says)
    ("", "bad or repeated id"),
    (f"A:{KEY_A_TEXT},", "bad or repeated id"),
    (f"A:{KEY_A_TEXT},,B:{KEY_B_TEXT}", "bad or repeated id"),
    (KEY_A_TEXT, "bad or repeated id"),
    (f"A:{SHORT_KEY}", "not 32 bytes"),
    ("A:", "not 32 bytes"),
    (f"A:{LONG_KEY}", "not 32 bytes"),
    (f"A:{KEY_A_TEXT},A:{KEY_B_TEXT}", "bad or repeated id"),
    (f"a.b:{KEY_A_TEXT}", "bad or repeated id"),
    (f"a b:{KEY_A_TEXT}", "bad or repeated id"),
    (f"{'k' * 33}:{KEY_A_TEXT}", "bad or repeated id"),
    (f"A:{KEY_A_TEXT} B:{KEY_B_TEXT}", "not 32 bytes"),
    (f"A:{KEY_A_TEXT}junk", "not 32 bytes"),
]


@pytest.mark.parametrize(
    ("raw", "says"),
    BAD_KEYS,
    ids=[
        "empty",
        "trailing empty entry",
        "empty entry between two",
        "missing colon",
        "16-byte key",
        "no key",
        "64-byte key",
        "duplicate id",
        "dot in id",
        "space in id",
        "id of 33 characters",
        "missed comma",
        "trailing junk",
    ],
)
def test_bad_seal_keys_raise_a_setting_error_naming_the_variable_without_key_material(raw: str, says: str) -> None:
    with pytest.raises(SettingError) as caught:
        Keyring.parse(raw)

    message = str(caught.value)
    assert caught.value.name == KEYS_VARIABLE
    assert message.startswith(f"{KEYS_VARIABLE}: expected ")
    assert says in message
    for material in (KEY_A_TEXT, KEY_B_TEXT, SHORT_KEY, LONG_KEY):
        assert material not in message


def test_standard_base64_keys_with_plus_and_slash_are_accepted() -> None:
    key = bytes([0xFB, 0xFF] * 16)
    standard = base64.b64encode(key).decode()
    assert "+" in standard or "/" in standard

    keyring = Keyring.parse(f"std:{standard}")

    assert keyring.keys == (("std", key),)


def test_a_new_entry_parses_into_a_keyring_with_that_id() -> None:
    entry = Keyring.new_entry("2025-06")

    keyring = Keyring.parse(entry)

    assert keyring.current_kid == "2025-06"
    assert len(keyring.keys[0][1]) == 32


def test_the_repr_of_a_keyring_shows_its_key_ids_and_no_key_bytes() -> None:
    keyring = ring("B", "A")

    shown = repr(keyring)

    assert "'B'" in shown and "'A'" in shown
    for key, text in ((KEY_A, KEY_A_TEXT), (KEY_B, KEY_B_TEXT)):
        assert repr(key) not in shown and text not in shown and key.hex() not in shown
    assert shown == str(keyring)


# --- sealed columns on a real database ------------------------------------------------------------


async def _patient(conn: asyncpg.Connection, external_id: str) -> tuple[int, int]:
    tenant_id = await tenants.ensure_tenant(conn, "clinic", "Clinic")
    return tenant_id, await tenants.ensure_user(conn, tenant_id, external_id, external_id.title())


async def test_a_sealed_token_copied_to_another_connection_row_fails_to_open_there(
    conn: asyncpg.Connection, keyring: Keyring
) -> None:
    _, first_user = await _patient(conn, "p1")
    _, second_user = await _patient(conn, "p2")
    first = await connections.upsert(conn, keyring, user_id=first_user, provider="oura", tokens={"access": "one"})
    second = await connections.upsert(conn, keyring, user_id=second_user, provider="oura", tokens={"access": "two"})

    await conn.execute(
        "UPDATE connections SET tokens_sealed = (SELECT tokens_sealed FROM connections WHERE id = $1) WHERE id = $2",
        first,
        second,
    )
    copied = await connections.load(conn, second)
    original = await connections.load(conn, first)

    assert copied is not None and original is not None
    assert copied.tokens_sealed == original.tokens_sealed
    with pytest.raises(SealError, match=f"connections.tokens_sealed row {second}"):
        copied.tokens(keyring)
    assert original.tokens(keyring) == {"access": "one"}


async def test_the_raw_sealed_columns_do_not_contain_the_plaintext(conn: asyncpg.Connection, keyring: Keyring) -> None:
    tenant_id, user_id = await _patient(conn, "p1")
    connection_id = await connections.upsert(
        conn, keyring, user_id=user_id, provider="oura", tokens={"access_token": "at-plaintext-4242"}
    )
    channel_id = await notification_channels.create_channel(
        conn, keyring, tenant_id=tenant_id, kind="ntfy", label="team", config={"token": "tk-plaintext-9191"}
    )

    raw_tokens = await conn.fetchval("SELECT tokens_sealed FROM connections WHERE id = $1", connection_id)
    raw_config = await conn.fetchval("SELECT config_sealed FROM notification_channels WHERE id = $1", channel_id)
    loaded = await connections.load(conn, connection_id)

    assert raw_tokens.startswith("cb1.test.") and "at-plaintext-4242" not in raw_tokens
    assert raw_config.startswith("cb1.test.") and "tk-plaintext-9191" not in raw_config
    assert loaded is not None and loaded.tokens(keyring) == {"access_token": "at-plaintext-4242"}
    assert "at-plaintext-4242" not in repr(loaded) and raw_tokens not in repr(loaded)


async def _sealed_values(conn: asyncpg.Connection) -> dict[tuple[str, int], str]:
    found: dict[tuple[str, int], str] = {}
    for table, column in SEALED_COLUMNS:
        for row in await conn.fetch(f"SELECT id, {column} AS sealed FROM {table} WHERE {column} IS NOT NULL"):
            found[(table, row["id"])] = row["sealed"]
    return found


async def test_reseal_moves_every_sealed_value_to_the_new_key_in_batches_and_then_has_nothing_left(
    conn: asyncpg.Connection,
) -> None:
    old = ring("A")
    tenant_id, _ = await _patient(conn, "p0")
    expected_tokens: dict[int, dict[str, str]] = {}
    for n in range(5):
        _, user_id = await _patient(conn, f"p{n}")
        tokens = {"access": f"token-{n}"}
        connection_id = await connections.upsert(conn, old, user_id=user_id, provider="oura", tokens=tokens)
        expected_tokens[connection_id] = tokens
    # A connection that holds no tokens stays NULL.
    _, tokenless_user = await _patient(conn, "p-none")
    tokenless = await conn.fetchval(
        "INSERT INTO connections (user_id, provider) VALUES ($1, 'withings') RETURNING id", tokenless_user
    )
    expected_configs: dict[int, dict[str, str]] = {}
    for n in range(3):
        config = {"topic": f"alerts-{n}"}
        channel_id = await notification_channels.create_channel(
            conn, old, tenant_id=tenant_id, kind="ntfy", label=f"c{n}", config=config
        )
        expected_configs[channel_id] = config
    assert all(value.startswith("cb1.A.") for value in (await _sealed_values(conn)).values())

    counts = await reseal(conn, ring("B", "A"), batch=2)
    again = await reseal(conn, ring("B", "A"), batch=2)

    # Only these tables hold sealed values here; every other sealed column is walked and empty.
    assert counts == {f"{t}.{c}": 0 for t, c in SEALED_COLUMNS} | {
        "connections.tokens_sealed": 5,
        "notification_channels.config_sealed": 3,
    }
    assert again == {f"{t}.{c}": 0 for t, c in SEALED_COLUMNS}
    values = await _sealed_values(conn)
    assert len(values) == 8
    assert all(value.startswith("cb1.B.") for value in values.values())
    only_b = ring("B")
    for connection_id, tokens in expected_tokens.items():
        loaded = await connections.load(conn, connection_id)
        assert loaded is not None and loaded.tokens(only_b) == tokens
    for channel_id, config in expected_configs.items():
        sealed = values[("notification_channels", channel_id)]
        opened = only_b.open_json(sealed, table="notification_channels", column="config_sealed", row_id=channel_id)
        assert opened == config
    assert await conn.fetchval("SELECT tokens_sealed FROM connections WHERE id = $1", tokenless) is None
