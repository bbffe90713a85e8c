"""What the recovery tests share: a PostgreSQL of the test's own that it can stop and start,
replicas in other processes that can be killed with SIGKILL, and the comparison of the database
with kubesim by uid.

Why a server of the test's own: a restart of the session's shared server would pull the
database out from under every other test running at the same time. This one lives in a fresh
data directory (its own Unix socket, so its own "port"), is stopped and started by the test,
and is deleted afterwards.

Why replicas in other processes: cancelling tasks of an in-process Supervisor is a polite
death (``finally`` blocks run, sockets are closed in order). ``kill -9`` of a process is what a
crash or an OOM kill really looks like to PostgreSQL and to the survivors.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from app.db import EmbeddedPostgres
from app.migrations import upgrade_to_head
from kubesim import KubeSim

ROOT = Path(__file__).resolve().parents[2]

# Inventory tables and the kubesim resource each one mirrors (helm releases and quotas are
# folded into other rows, so they are compared by the tests that pin them).
INVENTORY: dict[str, str] = {
    "k8s_namespaces": "namespaces",
    "k8s_nodes": "nodes",
    "k8s_deployments": "deployments",
    "k8s_replicasets": "replicasets",
    "k8s_pods": "pods",
}

Inventory = dict[str, frozenset[tuple[str, str]]]


class RestartablePostgres:
    """A PostgreSQL server in a data directory of its own, stopped and started on demand.

    ``start()``/``stop()`` block in pg_ctl, so they run in a worker thread and the test's loop
    (kubesim, the supervisors) keeps running while the database goes away and comes back.
    """

    def __init__(self) -> None:
        # Short on purpose: the Unix socket lives in the data directory, and socket paths are
        # limited to about 100 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="fg-rec-"))
        self._embedded = EmbeddedPostgres(self.root, delete_on_stop=False)
        self.url = ""
        self.running = False

    async def start(self) -> str:
        self.url = await asyncio.to_thread(self._embedded.start)
        self.running = True
        return self.url

    async def stop(self) -> None:
        """A fast shutdown: PostgreSQL terminates every session, as in a restart or failover."""
        self.running = False
        await asyncio.to_thread(self._embedded.stop)

    async def answers(self) -> bool:
        try:
            conn = await asyncpg.connect(self.url, timeout=2)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return False
        await conn.close()
        return True

    def remove(self) -> None:
        if self.running:
            self._embedded.stop()
            self.running = False
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.asynccontextmanager
async def own_postgres() -> AsyncIterator[RestartablePostgres]:
    """A migrated PostgreSQL of the test's own; removed (data directory too) afterwards."""
    server = RestartablePostgres()
    try:
        url = await server.start()
        await asyncio.to_thread(upgrade_to_head, url)
        yield server
    finally:
        await asyncio.to_thread(server.remove)


# --- comparing the database with kubesim --------------------------------------------------


async def stored_inventory(pool: asyncpg.Pool, cluster_id: uuid.UUID) -> Inventory:
    """(uid, resourceVersion) of every live row per inventory table."""
    found: Inventory = {}
    for table in INVENTORY:
        rows = await pool.fetch(
            f"SELECT uid, resource_version FROM {table}"
            " WHERE cluster_id = $1 AND deleted_at IS NULL",
            cluster_id,
        )
        found[table] = frozenset((r["uid"], r["resource_version"] or "") for r in rows)
    return found


def sim_inventory(sim: KubeSim) -> Inventory:
    """(uid, resourceVersion) of every object kubesim holds, per inventory table."""
    return {
        table: frozenset(
            (o["metadata"]["uid"], o["metadata"]["resourceVersion"])
            for o in sim.store.list(resource)
        )
        for table, resource in INVENTORY.items()
    }


async def divergence(pool: asyncpg.Pool, cluster_id: uuid.UUID, sim: KubeSim) -> dict[str, int]:
    """Rows that differ between the database and kubesim per table (missing, extra, or at
    another resourceVersion); empty when the two agree."""
    stored, live = await stored_inventory(pool, cluster_id), sim_inventory(sim)
    return {t: len(stored[t] ^ live[t]) for t in INVENTORY if stored[t] != live[t]}


async def all_converged(
    pool: asyncpg.Pool, clusters: dict[uuid.UUID, KubeSim]
) -> dict[uuid.UUID, dict[str, int]]:
    """Per cluster, what still differs (empty dict: every cluster matches its kubesim)."""
    out: dict[uuid.UUID, dict[str, int]] = {}
    for cluster_id, sim in clusters.items():
        try:
            differs = await divergence(pool, cluster_id, sim)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            differs = {f"database: {type(exc).__name__}": 1}
        if differs:
            out[cluster_id] = differs
    return out


def churn(sim: KubeSim, tag: str, count: int = 3) -> None:
    """Changes of every sort a watch must carry: pods created, one modified, one deleted."""
    pods = sim.store.list("pods")
    template = pods[0]
    namespace = template["metadata"]["namespace"]
    for i in range(count):
        sim.store.create("pods", {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{tag}-{i}-{uuid.uuid4().hex[:6]}", "namespace": namespace,
                         "labels": {"made": tag}},
            "spec": template["spec"], "status": {"phase": "Pending"},
        }, namespace=namespace)
    changed, deleted = pods[1]["metadata"], pods[2]["metadata"]
    sim.store.patch("pods", changed["name"], {"metadata": {"labels": {"touched": tag}}},
                    namespace=changed["namespace"])
    sim.store.delete("pods", deleted["name"], namespace=deleted["namespace"])


def touch(sim: KubeSim, tag: str) -> None:
    """One change: a label on the first pod."""
    pod = sim.store.list("pods")[0]["metadata"]
    sim.store.patch("pods", pod["name"], {"metadata": {"labels": {"touched": tag}}},
                    namespace=pod["namespace"])


@dataclass
class Timeline:
    """Monotonic instants of what happened, in the order the test saw them; the recovery
    tests assert the order, and put the durations in their output for the record."""

    marks: dict[str, float] = field(default_factory=dict)

    def mark(self, name: str) -> float:
        self.marks[name] = time.monotonic()
        return self.marks[name]

    def since(self, start: str, end: str) -> float:
        return self.marks[end] - self.marks[start]

    def report(self, origin: str) -> str:
        zero = self.marks[origin]
        return ", ".join(f"{name} +{at - zero:.2f}s" for name, at in self.marks.items()
                         if at >= zero and name != origin)


async def until(
    probe: Callable[[], Awaitable[Any]], *, within: float, interval: float = 0.05,
    what: str = "condition",
) -> Any:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` and the last
    value. A generous ``within`` is a hang guard, not the assertion: tests assert order."""
    deadline = time.monotonic() + within
    value: Any = None
    while time.monotonic() < deadline:
        value = await probe()
        if value:
            return value
        await asyncio.sleep(interval)
    raise AssertionError(f"{what} not reached within {within}s; last value: {value!r}")


async def first_of(
    timeline: Timeline, probes: dict[str, Callable[[], Awaitable[Any]]], *, within: float
) -> None:
    """Poll every probe each round and mark on ``timeline`` when each first holds, until all
    have: the marks then say in which order things became true."""
    pending = dict(probes)

    async def step() -> bool:
        for name, probe in list(pending.items()):
            if await probe():
                timeline.mark(name)
                del pending[name]
        return not pending

    await until(step, within=within, what=", ".join(pending))


# --- replicas in other processes -------------------------------------------------------------


class ReplicaProcess:
    """``python -m tests.recovery.replica`` in a process of its own: a Supervisor against the
    given database that reports, one JSON line each, when it starts and which clusters it
    syncs. ``kill()`` is SIGKILL: no cleanup of any kind runs."""

    def __init__(self, *, dsn: str, key: str, options: dict[str, Any]) -> None:
        env = {**os.environ, "FLEETGRAPH_REPLICA_DSN": dsn, "BYOK_ENCRYPTION_KEY": key,
               "FLEETGRAPH_REPLICA_OPTIONS": json.dumps(options), "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.recovery.replica"], cwd=ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.clusters: frozenset[uuid.UUID] = frozenset()
        self.lease_pid: int | None = None
        self._reader: asyncio.Task[None] | None = None
        self.stderr: list[str] = []

    async def start(self) -> None:
        self._reader = asyncio.create_task(self._read())
        await until(lambda: asyncio.sleep(0, self.lease_pid is not None), within=30,
                    what="replica start")

    async def _read(self) -> None:
        assert self.process.stdout is not None
        stream = self.process.stdout
        while True:
            line = await asyncio.to_thread(stream.readline)
            if not line:
                return
            report = json.loads(line)
            if "lease_pid" in report:
                self.lease_pid = report["lease_pid"]
            if "clusters" in report:
                self.clusters = frozenset(uuid.UUID(c) for c in report["clusters"])

    def pause(self) -> None:
        """SIGSTOP: the process is alive (its sockets open) but does nothing at all, like a
        replica whose host froze or whose network went silent."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)

    async def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                await asyncio.to_thread(self.process.wait, 15)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 5)
        if self.process.stderr is not None:
            self.stderr = self.process.stderr.read().splitlines()
