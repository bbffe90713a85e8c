"""Fixtures: a running kubesim per test, and real clients pointed at it.

Every client is built from the emulator's kubeconfig with an explicit
``kubernetes_asyncio.client.Configuration``; nothing touches the process-wide default.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client, config

from kubesim import KubeSim

START = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def kubesim() -> AsyncIterator[KubeSim]:
    """A small seeded fleet served over plain HTTP on a free port."""
    async with KubeSim.start(fleet="small", seed=1, start_time=START, bookmark_interval=0.3) as sim:
        yield sim


@pytest.fixture
async def kubesim_tls() -> AsyncIterator[KubeSim]:
    """The same over HTTPS: kubectl only sends its bearer token over TLS."""
    async with KubeSim.start(fleet="small", seed=1, start_time=START, tls=True) as sim:
        yield sim


@pytest.fixture
def kubeconfig_file(kubesim_tls: KubeSim, tmp_path: Path) -> Path:
    return kubesim_tls.write_kubeconfig(tmp_path / "kubeconfig")


@contextlib.asynccontextmanager
async def api_client(kubeconfig: dict[str, Any]) -> AsyncIterator[client.ApiClient]:
    """A kubernetes-asyncio ApiClient loaded from a kubeconfig dict, on its own Configuration."""
    configuration = client.Configuration()
    await config.load_kube_config_from_dict(kubeconfig, client_configuration=configuration)
    async with client.ApiClient(configuration=configuration) as api:
        yield api


@pytest.fixture
async def api(kubesim: KubeSim) -> AsyncIterator[client.ApiClient]:
    async with api_client(kubesim.kubeconfig) as api:
        yield api


async def eventually(check: Callable[[], bool], *, within: float = 5.0) -> None:
    """Wait until ``check()`` is true (for output arriving from a subprocess)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)
