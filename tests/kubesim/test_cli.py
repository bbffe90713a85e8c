"""``python -m kubesim`` serves a fleet and writes a kubeconfig kubectl can use."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import sys
from pathlib import Path

import pytest

from .test_kubectl import kubectl


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
async def test_module_entry_point_serves_until_stopped(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kc"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kubesim", "--port", "0", "--fleet", "small", "--seed", "5",
        "--token", "s3cret", "--kubeconfig-out", str(kubeconfig),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        banner = (await asyncio.wait_for(process.stdout.readline(), timeout=20)).decode()
        assert banner.startswith("kubesim serving https://127.0.0.1:")
        assert "s3cret" in kubeconfig.read_text()
        namespaces = json.loads(await kubectl(kubeconfig, "get", "ns", "-o", "json"))
        names = {n["metadata"]["name"] for n in namespaces["items"]}
        assert {"default", "kube-system", "payments-prod"} <= names
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=10) == 0


async def test_realtime_mode_moves_the_fleet_with_the_wall_clock() -> None:
    from kubesim import KubeSim

    async with KubeSim.start(fleet="small", seed=1) as sim:
        assert sim.fleet is not None
        before = sim.clock.now()
        sim.start_realtime(speed=600, tick=0.05)
        await asyncio.sleep(0.3)
        assert (sim.clock.now() - before).total_seconds() >= 60
        assert sim.fleet.stats.steps >= 2
