"""Web Push state: the deployment's one VAPID key pair.

The key pair is made on first use and kept in ``deployment_keys``, its private half sealed.
Two workers racing to make it both insert with ON CONFLICT DO NOTHING and read back the row
that won, so every worker signs with the same key.  Nothing here logs key material.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

import asyncpg
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from db.sealing import Keyring

TABLE, COLUMN = "deployment_keys", "secret_sealed"
VAPID = "vapid"


@dataclass(frozen=True, slots=True)
class VapidKeys:
    private_key: bytes = field(repr=False)  # the 32-byte P-256 private scalar, big-endian
    public_key: bytes  # the 65-byte uncompressed point

    @classmethod
    def from_private(cls, private: bytes) -> VapidKeys:
        """Raises ValueError unless ``private`` is a valid P-256 private scalar."""
        key = ec.derive_private_key(int.from_bytes(private, "big"), ec.SECP256R1())
        return cls(private, _public_bytes(key))

    @classmethod
    def generate(cls) -> VapidKeys:
        key = ec.generate_private_key(ec.SECP256R1())
        return cls(key.private_numbers().private_value.to_bytes(32, "big"), _public_bytes(key))

    @property
    def application_server_key(self) -> str:
        """What a browser passes to ``pushManager.subscribe``: base64url, unpadded."""
        return _b64url(self.public_key)


async def vapid_keys(conn: asyncpg.Connection, keyring: Keyring) -> VapidKeys:
    """The deployment's VAPID key pair, made and stored on first call.

    Raises SealError when the stored key was sealed with a key the keyring no longer holds.
    """
    row = await conn.fetchrow(f"SELECT id, {COLUMN} FROM {TABLE} WHERE name = $1", VAPID)
    if row is None:
        fresh = VapidKeys.generate()
        # The id comes first because the sealed value is bound to it.
        row_id: int = await conn.fetchval(f"SELECT nextval(pg_get_serial_sequence('{TABLE}', 'id'))")
        await conn.execute(
            f"INSERT INTO {TABLE} (id, name, public, {COLUMN}) VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
            row_id,
            VAPID,
            fresh.application_server_key,
            keyring.seal(fresh.private_key, table=TABLE, column=COLUMN, row_id=row_id),
        )
        row = await conn.fetchrow(f"SELECT id, {COLUMN} FROM {TABLE} WHERE name = $1", VAPID)
    private = keyring.open(row[COLUMN], table=TABLE, column=COLUMN, row_id=row["id"])
    return VapidKeys.from_private(private)


async def application_server_key(conn: asyncpg.Connection, keyring: Keyring) -> str:
    """The public key a subscribing page needs (base64url), made on first call like ``vapid_keys``."""
    public: str | None = await conn.fetchval(f"SELECT public FROM {TABLE} WHERE name = $1", VAPID)
    return public if public is not None else (await vapid_keys(conn, keyring)).application_server_key


def _public_bytes(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")
