"""Storage: PostgreSQL through asyncpg, SQL migrations, sealing of secrets, embedded servers."""

__all__ = ["DbSettings", "Keyring", "SealError", "Services", "SettingError", "create_pool", "open_services"]

import os

# Before numpy loads (db.metrics is its first importer, and every layer imports db first): a
# worker runs many small matrix jobs side by side on its threads, and a BLAS thread pool per
# call fights them for the cores (one correlation went from 1 ms to 27 ms on a busy box).  One
# BLAS thread gives the same floats.  An operator can still set these.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

from db.env import SettingError  # noqa: E402  (after the BLAS settings)
from db.pool import create_pool  # noqa: E402
from db.sealing import Keyring, SealError  # noqa: E402
from db.services import Services, open_services  # noqa: E402
from db.settings import DbSettings  # noqa: E402
