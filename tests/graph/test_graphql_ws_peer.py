"""Subscriptions through the reference npm ``graphql-ws`` client, a peer nobody here wrote.

Our own Python client (``tests/graph/ws.py``) happily read the binary frames the server once
sent, while every real graphql-transport-ws client rejected each message. These tests run
``tests/peers/graphql_ws_client.mjs`` (graphql-ws ``createClient`` over ``ws``) against the
live server, so the wire format is judged by the library GraphiQL, Apollo and urql build on.

They fail, never skip, when ``node`` or ``tests/peers/node_modules`` is missing: a skipped
peer test proves nothing in CI.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.api import Tenant
from tests.graph import rows
from tests.graph.ws import change_health

PEERS = Path(__file__).resolve().parents[1] / "peers"
SCRIPT = PEERS / "graphql_ws_client.mjs"
INSTALL_HINT = "run `make install` (it runs `npm ci --prefix tests/peers`)"

HEALTH = """subscription($id: ID) { clusterHealth(clusterId: $id) {
    clusterId clusterName status reason figures { podsTotal nodesTotal status } } }"""
SYNC = """subscription($id: ID!) { syncStatus(clusterId: $id) {
    clusterId status lastSyncedAt kinds { kind state items } changedKinds } }"""

Line = dict[str, Any]


def _gid(cluster_id: uuid.UUID) -> str:
    from schema.relay import to_global_id

    return str(to_global_id("Cluster", cluster_id))


def _node() -> str:
    """The ``node`` binary, once the pinned peers are installed; else the test fails (not
    skips) with what to run."""
    node = shutil.which("node")
    if node is None:
        pytest.fail(f"`node` (20 or newer) is not on PATH, so the npm graphql-ws peer cannot "
                    f"run: install Node.js, then {INSTALL_HINT}", pytrace=False)
    version = subprocess.run([node, "--version"], capture_output=True, text=True,
                             timeout=30).stdout.strip()
    major = re.match(r"v(\d+)\.", version)
    if major is None or int(major.group(1)) < 20:
        pytest.fail(f"graphql-ws 6 needs Node 20 or newer, `node --version` says {version!r}",
                    pytrace=False)
    pins: dict[str, str] = json.loads((PEERS / "package.json").read_text())["dependencies"]
    for package, pinned in pins.items():
        manifest = PEERS / "node_modules" / package / "package.json"
        if not manifest.exists():
            pytest.fail(f"tests/peers/node_modules/{package} is missing: {INSTALL_HINT}",
                        pytrace=False)
        installed = json.loads(manifest.read_text())["version"]
        if installed != pinned:
            pytest.fail(f"tests/peers has {package} {installed}, package.json pins {pinned}: "
                        f"{INSTALL_HINT}", pytrace=False)
    return node


class Peer:
    """The running Node client: its stdout JSON lines, its stdin commands, its stderr."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.seen: list[Line] = []     # every stdout line, in order, for failure messages
        self.pending: list[Line] = []  # lines read but not yet taken by expect()
        self.stderr = b""
        assert proc.stderr is not None
        self._stderr_task = asyncio.create_task(self._drain_stderr(proc.stderr))

    async def _drain_stderr(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(65536):
            self.stderr += chunk

    async def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        await self.proc.stdin.drain()

    async def expect(self, what: str, match: Callable[[Line], bool],
                     wait: float = 5.0) -> Line:
        """The first line (already read or still to come) that matches; others stay pending."""
        for i, earlier in enumerate(self.pending):
            if match(earlier):
                return self.pending.pop(i)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + wait
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {what} from the graphql-ws peer within {wait} s")
            raw = await asyncio.wait_for(self.proc.stdout.readline(), remaining)
            if not raw:
                await asyncio.wait_for(self._stderr_task, 5)
                raise AssertionError(f"the graphql-ws peer exited before {what}; stdout: "
                                     f"{self.seen}; stderr: {self.stderr.decode()}")
            line: Line = orjson.loads(raw)
            self.seen.append(line)
            if match(line):
                return line
            self.pending.append(line)

    async def exit_code(self, wait: float = 10.0) -> int:
        """Wait for the process to end on its own; the rest of stdout lands in ``pending``."""
        assert self.proc.stdout is not None
        rest = await asyncio.wait_for(self.proc.stdout.read(), wait)
        for raw in rest.splitlines():
            self.seen.append(orjson.loads(raw))
            self.pending.append(self.seen[-1])
        code = await asyncio.wait_for(self.proc.wait(), wait)
        await asyncio.wait_for(self._stderr_task, wait)
        return code

    def errors(self) -> list[Line]:
        return [orjson.loads(raw)["error"] for raw in self.stderr.splitlines() if raw.strip()]


@contextlib.asynccontextmanager
async def graphql_ws_peer(spec: dict[str, Any]) -> AsyncIterator[Peer]:
    """Start the Node client with ``spec`` on its first stdin line; always gone afterwards."""
    node = _node()
    proc = await asyncio.create_subprocess_exec(
        node, str(SCRIPT), cwd=PEERS, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    peer = Peer(proc)
    try:
        await peer.send(json.dumps({"timeoutMs": 60_000, **spec}))
        yield peer
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        peer._stderr_task.cancel()


def _sub(name: str, match: Callable[[dict[str, Any]], bool] = lambda _: True
         ) -> Callable[[Line], bool]:
    """Matches an event line of subscription ``name`` whose GraphQL data satisfies ``match``."""
    field = {"health": "clusterHealth", "sync": "syncStatus"}[name]
    return lambda line: (line.get("sub") == name
                         and match(line["event"].get("data", {}).get(field) or {}))


async def test_sync_status_and_cluster_health_on_one_socket_through_graphql_ws(
    api: Any, tenant: Tenant
) -> None:
    """Both subscriptions on one graphql-ws socket get exact payloads from real NOTIFY-driven
    changes, pings get pongs, and completing each one is honoured by the server."""
    async with api.pool.acquire() as conn:
        cid = await rows.cluster(conn, tenant.org_id, "peer")
        await rows.pod(conn, cid, "default", "web-1")
        await conn.execute(
            """UPDATE k8s_clusters SET status = 'active', sync_progress =
               '{"pods": {"state": "listing", "items": 120},
                 "nodes": {"state": "watching", "items": 3}}' WHERE id = $1""", cid)
    gid = _gid(cid)
    spec = {"url": api.ws_url, "token": tenant.tokens["viewer"], "keepAliveMs": 200,
            "subscriptions": {"sync": {"query": SYNC, "variables": {"id": gid}},
                              "health": {"query": HEALTH, "variables": {"id": gid}}}}
    async with graphql_ws_peer(spec) as peer:
        connected = await peer.expect("connected", lambda line: "connected" in line)
        assert connected == {"connected": {"protocol": "graphql-transport-ws", "payload": None}}

        # syncStatus starts with the current state.
        snapshot = await peer.expect("the syncStatus snapshot", _sub("sync"))
        synced_at = await api.pool.fetchval(
            "SELECT last_synced_at FROM k8s_clusters WHERE id = $1", cid)
        assert snapshot["event"] == {"data": {"syncStatus": {
            "clusterId": gid, "status": "ACTIVE",
            "lastSyncedAt": None if synced_at is None else synced_at.isoformat(),
            "kinds": [{"kind": "nodes", "state": "watching", "items": 3},
                      {"kind": "pods", "state": "listing", "items": 120}],
            "changedKinds": []}}}

        # clusterHealth has no snapshot: poke until the server has registered it.
        for attempt in range(40):
            await change_health(api.pool, cid, tenant.org_id, "degraded", f"warming up {attempt}")
            with contextlib.suppress(TimeoutError):
                await peer.expect("a first health event", _sub("health"), wait=0.25)
                break
        else:
            raise AssertionError(f"clusterHealth never became live; peer said {peer.seen}")

        # One sync flush that changed health: one event on each subscription.
        await api.pool.execute(
            """UPDATE k8s_clusters SET last_synced_at = now(), sync_progress =
               '{"pods": {"state": "watching", "items": 121},
                 "nodes": {"state": "watching", "items": 3}}' WHERE id = $1""", cid)
        await change_health(api.pool, cid, tenant.org_id, "critical", "2/3 nodes NotReady")
        synced_at = await api.pool.fetchval(
            "SELECT last_synced_at FROM k8s_clusters WHERE id = $1", cid)
        health = await peer.expect(
            "the critical health event",
            _sub("health", lambda e: e.get("reason") == "2/3 nodes NotReady"))
        assert health["event"] == {"data": {"clusterHealth": {
            "clusterId": gid, "clusterName": "peer", "status": "CRITICAL",
            "reason": "2/3 nodes NotReady",
            "figures": {"podsTotal": 1, "nodesTotal": 0, "status": "CRITICAL"}}}}
        sync = await peer.expect(
            "the sync event of that flush",
            _sub("sync", lambda e: {"kind": "pods", "state": "watching", "items": 121}
                 in e.get("kinds", [])))
        assert sync["event"] == {"data": {"syncStatus": {
            "clusterId": gid, "status": "ACTIVE", "lastSyncedAt": synced_at.isoformat(),
            "kinds": [{"kind": "nodes", "state": "watching", "items": 3},
                      {"kind": "pods", "state": "watching", "items": 121}],
            "changedKinds": ["pods"]}}}

        # Nothing for syncStatus is in flight now, so after `complete` the server must not send
        # it anything more: the next change reaches clusterHealth only (a late `next` for
        # "sync" is reported by the client as a stray and fails it).
        await peer.send("complete sync")
        assert await peer.expect("sync's complete",
                                 lambda line: "complete" in line) == {"complete": "sync"}
        await change_health(api.pool, cid, tenant.org_id, "healthy", "recovered")
        recovered = await peer.expect(
            "the recovered health event",
            _sub("health", lambda e: e.get("reason") == "recovered"))
        assert recovered["event"]["data"]["clusterHealth"]["status"] == "HEALTHY"
        # A pong after that event: the server has long finished any send it made for the
        # same notice, so a stray would already be in.
        await peer.expect("a pong", lambda line: line == {"pong": {"received": True}})

        await peer.send("complete health")
        assert await peer.expect("health's complete",
                                 lambda line: "complete" in line) == {"complete": "health"}
        code = await peer.exit_code()
        assert code == 0, (peer.seen, peer.stderr.decode())

    assert peer.errors() == []
    assert not [line for line in peer.seen if "stray" in line]
    summary = peer.pending[-1]["summary"]
    assert summary["strays"] == [], summary
    assert summary["opened"] == 1 and summary["connected"] == 1, summary  # one socket for both
    assert summary["pings"] >= 1 and summary["pongs"] >= 1, summary
    assert summary["frames"]["binary"] == 0 and summary["frames"]["text"] >= 6, summary
    assert summary["closed"] == {"code": 1000, "reason": "Normal Closure", "wasClean": True}
    assert peer.pending[-2] == {"closed": summary["closed"]}


async def test_a_bad_token_is_refused_with_4403_and_the_client_says_so(api: Any) -> None:
    """graphql-transport-ws rejects a bad ``connection_init`` by closing with 4403 Forbidden
    (Strawberry, on our ConnectionRejectionError); the client must see exactly that."""
    spec = {"url": api.ws_url, "token": "fg_this_is_not_a_token",
            "subscriptions": {"health": {"query": HEALTH}}}
    async with graphql_ws_peer(spec) as peer:
        code = await peer.exit_code(wait=15)
    assert code == 1, (peer.seen, peer.stderr.decode())
    assert peer.errors() == [{"sub": "health", "closed": {"code": 4403, "reason": "Forbidden",
                                                          "wasClean": True}}]
    summary = peer.seen[-1]["summary"]
    assert summary["connected"] == 0 and summary["opened"] == 1, summary  # no retry, no ack
    assert not [line for line in peer.seen if "sub" in line or "connected" in line]
