"""Where the database and the broker are: configured URLs, or the embedded servers."""

from __future__ import annotations

from dataclasses import dataclass, field

from db.embedded import EmbeddedServices, local_seal_key
from db.env import SettingError
from db.sealing import KEYS_VARIABLE, Keyring
from db.settings import DbSettings


@dataclass
class Services:
    database_url: str = field(repr=False)
    redis_url: str = field(repr=False)
    keyring: Keyring
    embedded: EmbeddedServices | None = None
    notes: tuple[str, ...] = ()

    def close(self) -> None:
        if self.embedded is not None:
            self.embedded.close()
            self.embedded = None


def open_services(settings: DbSettings, redis_url: str | None) -> Services:
    """Use the configured servers, or start (or attach to) embedded ones for what is missing.

    Raises SettingError when no seal key is set outside embedded mode: generating one there
    would seal data with a key no other machine has.
    """
    notes: list[str] = []
    embedded = None
    if settings.database_url is None or redis_url is None:
        embedded = EmbeddedServices(settings.data_dir).start(
            postgres=settings.database_url is None, redis=redis_url is None
        )
        notes.append(f"embedded servers under {settings.data_dir}")
    keyring = settings.seal_keys
    if keyring is None:
        if settings.database_url is not None:
            if embedded is not None:
                embedded.close()
            raise SettingError(KEYS_VARIABLE, "seal keys (make one with `carebeacon sealkey`) when DATABASE_URL is set")
        entry, created = local_seal_key(settings.data_dir)
        keyring = Keyring.parse(entry, name=f"{settings.data_dir}/seal.key")
        if created:
            notes.append(f"generated a local seal key in {settings.data_dir}/seal.key (mode 0600)")
    return Services(
        database_url=settings.database_url or (embedded.database_url if embedded else ""),
        redis_url=redis_url or (embedded.redis_url if embedded else ""),
        keyring=keyring,
        embedded=embedded,
        notes=tuple(notes),
    )
