"""Sealing secrets at rest with AES-256-GCM, with key ids and row binding.

A sealed value is text: ``cb1.<key id>.<base64url(nonce ‖ ciphertext ‖ tag)>``.

* The key id names the key that sealed it, so keys rotate: the first key of the keyring
  seals, every key opens, and ``carebeacon reseal`` moves old values to the first key.
* The associated data is ``cb1.<key id>|<table>.<column>|<row id>``.  A sealed value copied
  to another row, column or table fails to open, and so does one whose key id was edited.
* The nonce is 12 random bytes per seal (NIST SP 800-38D, 8.2.2); at our volume the
  random-nonce collision bound is nowhere near reached.

Keys come from ``CAREBEACON_SEAL_KEYS``: comma-separated ``id:base64key`` entries, each key
32 bytes.  Nothing here logs, and no error message carries a plaintext or a key.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from db.env import SettingError

PREFIX = "cb1"
_KID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
# 32 bytes in standard or URL-safe base64: 43 characters and an optional pad.  Checked before
# decoding, because a lenient decoder would accept a key with a second entry glued to it.
_KEY = re.compile(r"^[A-Za-z0-9+/_-]{43}=?$")
_NONCE_BYTES = 12
KEYS_VARIABLE = "CAREBEACON_SEAL_KEYS"
_EXPECTED = "comma-separated id:base64key entries (id of letters, digits, - or _; key of 32 bytes)"


class SealError(Exception):
    """A sealed value could not be opened: wrong row, unknown key, or tampered bytes."""


@dataclass(frozen=True, slots=True)
class Keyring:
    """Seal keys in order: ``keys[0]`` seals, all of them open."""

    keys: tuple[tuple[str, bytes], ...] = field(repr=False)

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("a keyring needs at least one key")

    def __repr__(self) -> str:
        return f"Keyring(kids={[kid for kid, _ in self.keys]!r})"

    @classmethod
    def parse(cls, raw: str, name: str = KEYS_VARIABLE) -> Keyring:
        """Parse ``id:base64key,id:base64key``; raises SettingError naming ``name``."""
        keys: list[tuple[str, bytes]] = []
        for index, entry in enumerate(part.strip() for part in raw.split(",")):
            kid, sep, encoded = entry.partition(":")
            if not sep or not _KID.match(kid) or any(kid == seen for seen, _ in keys):
                raise SettingError(name, _EXPECTED, f"entry {index + 1} with a bad or repeated id")
            key = b""
            if _KEY.match(encoded):
                key = base64.urlsafe_b64decode(encoded.replace("+", "-").replace("/", "_").rstrip("=") + "=")
            if len(key) != 32:
                raise SettingError(name, _EXPECTED, f"entry {kid!r} whose key is not 32 bytes of base64")
            keys.append((kid, key))
        return cls(tuple(keys))

    @staticmethod
    def new_entry(kid: str) -> str:
        """A fresh ``id:base64key`` entry to put first in CAREBEACON_SEAL_KEYS."""
        if not _KID.match(kid):
            raise ValueError("a key id is 1-32 letters, digits, - or _")
        return f"{kid}:{base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()}"

    @property
    def current_kid(self) -> str:
        return self.keys[0][0]

    def seal(self, plaintext: bytes, *, table: str, column: str, row_id: int) -> str:
        kid, key = self.keys[0]
        nonce = os.urandom(_NONCE_BYTES)
        body = AESGCM(key).encrypt(nonce, plaintext, _aad(kid, table, column, row_id))
        return f"{PREFIX}.{kid}.{base64.urlsafe_b64encode(nonce + body).decode().rstrip('=')}"

    def open(self, sealed: str, *, table: str, column: str, row_id: int) -> bytes:
        where = f"{table}.{column} row {row_id}"
        prefix, kid, encoded = _split(sealed, where)
        key = dict(self.keys).get(kid)
        if key is None:
            raise SealError(f"{where} is sealed with key {kid!r}, which {KEYS_VARIABLE} does not hold")
        try:
            blob = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
            return AESGCM(key).decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], _aad(kid, table, column, row_id))
        except (InvalidTag, binascii.Error, ValueError) as exc:
            raise SealError(f"{where} failed to open: tampered, or sealed for another row") from exc

    def seal_json(self, value: Any, *, table: str, column: str, row_id: int) -> str:
        raw = json.dumps(value, separators=(",", ":")).encode()
        return self.seal(raw, table=table, column=column, row_id=row_id)

    def open_json(self, sealed: str, *, table: str, column: str, row_id: int) -> Any:
        return json.loads(self.open(sealed, table=table, column=column, row_id=row_id))

    def is_current(self, sealed: str) -> bool:
        return sealed.startswith(f"{PREFIX}.{self.current_kid}.")


def _aad(kid: str, table: str, column: str, row_id: int) -> bytes:
    return f"{PREFIX}.{kid}|{table}.{column}|{row_id}".encode()


def _split(sealed: str, where: str) -> tuple[str, str, str]:
    parts = sealed.split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise SealError(f"{where} is not a sealed value")
    return parts[0], parts[1], parts[2]
