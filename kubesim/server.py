"""The running emulator: store + fleet + faults behind one HTTP listener.

:class:`KubeSim` is what tests, the demo and the benchmarks hold on to. It owns the event
loop side of things (the aiohttp runner, the listener that ``down()``/``up()`` close and
reopen on the same port, the real-time fleet task) and hands out a kubeconfig for itself.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from kubesim.clock import SimClock
from kubesim.faults import Faults
from kubesim.fleet import Fleet
from kubesim.http import ApiState, build_app, close_watches
from kubesim.metrics import MetricsSource
from kubesim.store import Store
from kubesim.tls import SelfSignedCert, make_self_signed


class KubeSim:
    """A Kubernetes API server emulator with an optional simulated fleet.

    Build it, then ``await sim.serve()`` (or use ``async with KubeSim.start(...) as sim``).
    """

    def __init__(
        self,
        *,
        fleet: str | None = "small",
        seed: int = 0,
        token: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        history_window: int = 10_000,
        bookmark_interval: float = 5.0,
        start_time: datetime | None = None,
        cluster_name: str = "kubesim",
        tls: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self.seed = seed
        self.cluster_name = cluster_name
        self.token = token if token is not None else f"kubesim-{secrets.token_hex(16)}"
        self.clock = SimClock(start_time)
        self.store = Store(history_window=history_window, clock=self.clock, seed=seed)
        self.faults = Faults(seed=seed)
        self.fleet: Fleet | None = Fleet(self.store, size=fleet, seed=seed) if fleet else None
        self.metrics = MetricsSource(self.store, load=self.fleet.load_of if self.fleet else None)
        self.state = ApiState(
            store=self.store,
            faults=self.faults,
            metrics=self.metrics,
            token=self.token,
            bookmark_interval=bookmark_interval,
            after_controlled_write=self.fleet.settle if self.fleet else None,
        )
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._realtime: asyncio.Task[None] | None = None
        self.tls: SelfSignedCert | None = make_self_signed(host) if tls else None
        self._ssl_context = self.tls.server_context() if self.tls else None
        self._ca_file: Path | None = None

    # ---------------------------------------------------------------- lifecycle
    @classmethod
    @contextlib.asynccontextmanager
    async def start(cls, *, realtime: bool = False, **options: Any) -> AsyncIterator[KubeSim]:
        """``async with KubeSim.start(fleet="small", seed=1) as sim:`` on the running loop."""
        sim = cls(**options)
        await sim.serve()
        if realtime:
            sim.start_realtime()
        try:
            yield sim
        finally:
            await sim.stop()

    async def serve(self) -> None:
        """Start listening (port 0 picks a free port; ``sim.port`` then holds it)."""
        self._runner = web.AppRunner(
            build_app(self.state), handle_signals=False, access_log=None, shutdown_timeout=1.0
        )
        await self._runner.setup()
        await self._listen()

    async def _listen(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(
            self._runner, self.host, self.port, reuse_address=True, ssl_context=self._ssl_context
        )
        await self._site.start()
        server = self._site._server
        if self.port == 0 and isinstance(server, asyncio.base_events.Server) and server.sockets:
            self.port = int(server.sockets[0].getsockname()[1])
        self.state.server_address = f"{self.host}:{self.port}"

    async def stop(self) -> None:
        """Stop serving; watch streams end and connections close within about a second."""
        if self._realtime is not None:
            self._realtime.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._realtime
            self._realtime = None
        await close_watches(self.state)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._site = None
        if self._ca_file is not None:
            self._ca_file.unlink(missing_ok=True)
            self._ca_file = None

    async def down(self) -> None:
        """The API server vanishes: the listener closes (connections are refused) and every
        open connection, watch streams included, is dropped."""
        if self._runner is None or self._site is None:
            return
        await self._site.stop()
        self._site = None
        await close_watches(self.state)
        server = self._runner.server
        if server is not None:
            server.pre_shutdown()
            await server.shutdown(1.0)

    async def up(self) -> None:
        """Come back on the same port after :meth:`down`."""
        if self._runner is None:
            raise RuntimeError("KubeSim is not serving; call serve() first")
        if self._site is None:
            await self._listen()

    @contextlib.asynccontextmanager
    async def outage(self) -> AsyncIterator[None]:
        """``async with sim.outage():`` - down inside the block, up again after it."""
        await self.down()
        try:
            yield
        finally:
            await self.up()

    @property
    def is_up(self) -> bool:
        return self._site is not None

    def start_realtime(self, *, speed: float = 1.0, tick: float = 2.0) -> None:
        """Let the fleet follow the wall clock in a background task (the demo mode)."""
        if self.fleet is None or self._realtime is not None:
            return
        self._realtime = asyncio.get_running_loop().create_task(
            self.fleet.run_realtime(speed=speed, tick=tick)
        )

    def add_user_without_rights(self, name: str = "nobody") -> str:
        """A token that authenticates as ``name`` and is bound to no role: the API answers
        it 403 Forbidden everywhere but discovery. Returns the token."""
        token = f"{name}-{secrets.token_hex(16)}"
        self.state.users_without_rights[token] = name
        return token

    # ---------------------------------------------------------------- clients
    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def kubeconfig(self) -> dict[str, Any]:
        """A kubeconfig dict: one cluster (this server), a token user, one current context."""
        name = self.cluster_name
        cluster: dict[str, Any] = {"server": self.url}
        if self.tls:
            cluster["certificate-authority-data"] = base64.b64encode(self.tls.cert_pem).decode()
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "preferences": {},
            "clusters": [{"name": name, "cluster": cluster}],
            "users": [{"name": f"{name}-admin", "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": name,
                    "context": {"cluster": name, "user": f"{name}-admin", "namespace": "default"},
                }
            ],
            "current-context": name,
        }

    def write_kubeconfig(self, path: str | Path) -> Path:
        """Write :attr:`kubeconfig` as YAML (mode 0600, like kubectl's own)."""
        target = Path(path)
        target.write_text(yaml.safe_dump(self.kubeconfig, sort_keys=False))
        target.chmod(0o600)
        return target

    def client_configuration(self) -> Any:
        """A ``kubernetes_asyncio.client.Configuration`` for this server (never the global one)."""
        from kubernetes_asyncio.client import Configuration

        configuration = Configuration(
            host=self.url,
            api_key={"BearerToken": self.token},
            api_key_prefix={"BearerToken": "Bearer"},
        )
        return configuration
