"""One face for two API servers: kubesim and the real kube-apiserver of this tier.

The conformance tests (test_conformance.py) say each behaviour once and run it against both,
so whatever kubesim gets wrong shows up as a kubesim-only failure. An :class:`ApiServer`
is what such a test may use: raw HTTP as the sync does it (``aiohttp``, bearer tokens, JSON),
a watch read to its end, kubectl, and the one operation the two do differently -
:meth:`ApiServer.compact`, which on the real server is an etcd compaction.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.realk8s.controlplane import binaries_dir

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"


@dataclass(frozen=True)
class Answer:
    """One HTTP answer: the status, the content type, and the body (JSON decoded if JSON)."""

    status: int
    content_type: str
    body: Any

    @property
    def items(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.body["items"]
        return items


def kubectl_binary() -> str | None:
    """The tier's kubectl (v1.35, the one that sends protobuf) if built, else one on PATH."""
    built = binaries_dir() / "kubectl"
    if os.access(built, os.X_OK):
        return str(built)
    return shutil.which("kubectl")


@dataclass
class ApiServer:
    """A running API server as the conformance tests see it."""

    name: str
    url: str
    ssl_context: ssl.SSLContext
    tokens: dict[str, str]  # "admin" (may do anything) and "nobody" (authenticated, no rights)
    kubeconfig: Path
    compact: Callable[[], Awaitable[None]]
    namespaces: list[str] = field(default_factory=list)  # made by tests; removed by close()
    _session: aiohttp.ClientSession | None = field(default=None, repr=False)

    async def close(self, *, within: float = 120.0) -> None:
        """Delete the tests' namespaces and wait until they are gone (the real server's
        namespace controller takes seconds), so the tier's later tests, which compare the
        whole cluster with what the sync stored, see none of their leftovers."""
        for name in self.namespaces:
            await self.request("DELETE", f"/api/v1/namespaces/{name}")
        deadline = asyncio.get_running_loop().time() + within
        for name in self.namespaces:
            while (await self.request("GET", f"/api/v1/namespaces/{name}")).status != 404:
                assert asyncio.get_running_loop().time() < deadline, f"{name} not deleted"
                await asyncio.sleep(0.5)
        self.namespaces.clear()
        if self._session is not None:
            await self._session.close()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self.ssl_context)
            )
        return self._session

    def _headers(self, user: str | None, extra: Mapping[str, str] | None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if user is not None:
            token = self.tokens.get(user, user)  # a user name, else a literal (bad) token
            headers["Authorization"] = f"Bearer {token}"
        headers.update(extra or {})
        return headers

    async def request(
        self,
        method: str,
        path: str,
        *,
        user: str | None = "admin",
        body: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Answer:
        """One request; JSON bodies are sent and decoded as JSON, anything else is text."""
        extra = dict(headers or {})
        data = None
        if body is not None:
            extra.setdefault("Content-Type", content_type)
            data = json.dumps(body)
        async with self._client().request(
            method, self.url + path, params=params, data=data,
            headers=self._headers(user, extra), timeout=aiohttp.ClientTimeout(total=60),
        ) as response:
            raw = await response.read()
            kind = response.content_type
            decoded: Any = json.loads(raw) if kind == "application/json" else raw.decode()
            return Answer(response.status, kind, decoded)

    async def ok(self, method: str, path: str, **options: Any) -> Any:
        """:meth:`request` that must succeed; returns the body."""
        answer = await self.request(method, path, **options)
        assert answer.status < 300, f"{self.name}: {method} {path} -> {answer}"
        return answer.body

    async def watch(
        self, path: str, params: Mapping[str, str], *, user: str = "admin",
        stop: Callable[[list[dict[str, Any]]], bool] | None = None,
        during: Callable[[], Awaitable[None]] | None = None, limit_s: float = 60.0,
    ) -> list[dict[str, Any]]:
        """The events of one watch, read until the server ends it (or ``stop(events)``);
        ``during`` runs once the watch has been accepted."""
        events: list[dict[str, Any]] = []
        query = {"watch": "true", **params}

        async def read() -> None:
            async with self._client().get(
                self.url + path, params=query, headers=self._headers(user, None),
                timeout=aiohttp.ClientTimeout(total=limit_s),
            ) as response:
                assert response.status == 200, f"{self.name}: watch {path} -> {response.status}"
                task = asyncio.ensure_future(during()) if during is not None else None
                async for line in response.content:
                    if line.strip():
                        events.append(json.loads(line))
                    if stop is not None and stop(events):
                        break
                if task is not None:
                    await task

        await read()
        return events

    async def kubectl(self, *args: str, stdin: str | None = None) -> str:
        binary = kubectl_binary()
        assert binary is not None, "no kubectl"
        process = await asyncio.create_subprocess_exec(
            binary, f"--kubeconfig={self.kubeconfig}", *args,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(
            process.communicate(stdin.encode() if stdin is not None else None), 120)
        assert process.returncode == 0, (
            f"{self.name}: kubectl {' '.join(args)} failed: {err.decode()}")
        return out.decode()
