"""The entry module for Dramatiq's CLI: ``dramatiq pipeline.worker --queues sync --threads 5``.

It starts the runtime from the environment (attaching to the embedded servers when no URLs
are set) and declares the actors.
"""

import atexit
import os

from pipeline import runtime
from pipeline.logs import configure_logging

configure_logging(os.environ)
runtime.start(os.environ)
atexit.register(runtime.stop)

import pipeline.actors  # noqa: E402,F401  (declares the actors on the broker started above)

broker = runtime.current().broker
