"""A FleetGraph sync replica in a process of its own, for the recovery tests (``kill -9``).

Run as ``python -m tests.recovery.replica`` with ``FLEETGRAPH_REPLICA_DSN``,
``BYOK_ENCRYPTION_KEY`` and ``FLEETGRAPH_REPLICA_OPTIONS`` (JSON overrides of SyncOptions). It
runs the real Supervisor, no API, and prints one JSON line when its lease connection is up
(``{"lease_pid": ...}``) and one each time the set of clusters it syncs changes
(``{"clusters": [...]}``). SIGTERM stops it the orderly way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from typing import Any

from app.db import close_pool, create_pool
from app.network_guard import NetworkPolicy
from app.settings import Settings
from app.vault import Vault
from sync.cluster_sync import SyncOptions
from sync.supervisor import Supervisor


def _say(**report: Any) -> None:
    sys.stdout.write(json.dumps(report) + "\n")
    sys.stdout.flush()


async def main() -> None:
    overrides: dict[str, Any] = json.loads(os.environ.get("FLEETGRAPH_REPLICA_OPTIONS") or "{}")
    options = SyncOptions(**{**overrides, "network": NetworkPolicy(allow_local=True)})
    # Transactions a frozen replica left open end as soon as its lease does (see test_failover).
    idle_ms = round(1000 * float(overrides.get("lease_ttl", 15.0)))
    pool = await create_pool(os.environ["FLEETGRAPH_REPLICA_DSN"], max_size=6,
                             idle_in_transaction_timeout_ms=idle_ms)
    vault = Vault.from_env(os.environ["BYOK_ENCRYPTION_KEY"])
    supervisor = Supervisor(pool, vault, Settings(), options=options, housekeeping=False)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await supervisor.start()
    said_pid: int | None = None
    said: frozenset[Any] | None = None
    try:
        while not stop.is_set():
            pid = supervisor.lease_pid
            if pid is not None and pid != said_pid:
                said_pid = pid
                _say(lease_pid=pid)
            if supervisor.clusters != said:
                said = supervisor.clusters
                _say(clusters=sorted(str(c) for c in said))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.05)
    finally:
        await supervisor.stop()
        await close_pool(pool)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(main())
