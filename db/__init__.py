"""Storage: PostgreSQL through asyncpg, SQL migrations, sealing of secrets, embedded servers."""

__all__ = ["DbSettings", "Keyring", "SealError", "Services", "SettingError", "create_pool", "open_services"]

from db.env import SettingError
from db.pool import create_pool
from db.sealing import Keyring, SealError
from db.services import Services, open_services
from db.settings import DbSettings
