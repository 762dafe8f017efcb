"""The pipeline's own trigger and reconciler, run in a process of their own for the drills.

``python -m tests.resilience.driver sync --trigger manual 3 4 5`` calls ``request_sync`` for
each connection and prints the run ids as one JSON list.  ``... reconcile --every 1`` calls
``reconcile`` once a second until killed, printing each pass that re-enqueued something as a
JSON line.  Settings come from the environment, as in a worker.

Why a process and not a call from the test: actors send to the broker ``runtime.start()``
bound them to, once per process.  The in-process pipeline tests bind them to their own Redis
database and worker, so a drill's message sent from the pytest process would reach that
worker, which would claim a run id in the wrong database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from dataclasses import asdict

from pipeline import runtime


async def _sync(connection_ids: list[int], trigger: str) -> None:
    from pipeline.triggers import request_sync

    pool = await runtime.pool()
    run_ids = [await request_sync(pool, connection_id, trigger) for connection_id in connection_ids]
    print(json.dumps(run_ids), flush=True)


async def _reconcile(every: float) -> None:
    from pipeline.reconciler import reconcile

    rt = runtime.current()
    pool = await runtime.pool()
    while True:
        found = await reconcile(pool, rt.settings)
        if found.syncs or found.analyses or found.notifications:
            print(json.dumps(asdict(found)), flush=True)
        await asyncio.sleep(every)


async def _main(args: argparse.Namespace) -> None:
    try:
        if args.command == "sync":
            await _sync(args.connection_ids, args.trigger)
        else:
            await _reconcile(args.every)
    finally:
        await runtime.close_pool()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.resilience.driver")
    sub = parser.add_subparsers(dest="command", required=True)
    sync = sub.add_parser("sync")
    sync.add_argument("--trigger", default="manual")
    sync.add_argument("connection_ids", nargs="+", type=int)
    loop = sub.add_parser("reconcile")
    loop.add_argument("--every", type=float, default=1.0)
    args = parser.parse_args()

    runtime.start(os.environ)
    import pipeline.actors  # noqa: F401  (binds the actors to the broker started above)

    try:
        asyncio.run(_main(args))
    finally:
        runtime.stop()


if __name__ == "__main__":
    main()
