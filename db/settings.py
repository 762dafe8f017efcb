"""Settings of the storage layer, read once from the environment."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from db import env as envlib
from db.sealing import KEYS_VARIABLE, Keyring


@dataclass(frozen=True, slots=True)
class DbSettings:
    """``database_url`` None means "start or attach the embedded server under ``data_dir``"."""

    database_url: str | None = field(repr=False)
    seal_keys: Keyring | None
    data_dir: Path
    pool_max: int = 10

    @classmethod
    def from_env(cls, env: envlib.Env) -> DbSettings:
        raw_keys = envlib.secret(env, KEYS_VARIABLE)
        return cls(
            database_url=envlib.url(env, "DATABASE_URL", ("postgres", "postgresql")),
            seal_keys=Keyring.parse(raw_keys) if raw_keys else None,
            data_dir=Path(envlib.text(env, "CAREBEACON_DATA_DIR", ".carebeacon") or ".carebeacon").absolute(),
            pool_max=envlib.integer(env, "DB_POOL_MAX", 10, minimum=2, maximum=200),
        )
