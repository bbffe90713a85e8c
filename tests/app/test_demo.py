"""``fleetgraph demo`` as a newcomer runs it: a real process that registers a kubesim fleet
through the real path, syncs it, and answers GraphQL with live data and cost from its first
minute (a day of history here; the figures are pinned in test_demo_history.py); Ctrl-C stops
it cleanly."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

FLEETGRAPH = str(Path(sys.executable).with_name("fleetgraph"))
QUERY = """{ clusters { edges { node { name status
    health { status nodesTotal podsTotal podsRunning }
    namespaces(first: 50) { totalCount } } } } }"""
COSTS = """query($from: DateTime!, $to: DateTime!) {
  costs(window: {from: $from, to: $to}) { provisional totalCost }
  budgets { scopeValue } }"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_demo_serves_a_live_synced_fleet(isolated_database_url: str, tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "BYOK_ENCRYPTION_KEY"}
    env.update(DATABASE_URL=isolated_database_url, FLEETGRAPH_DATA_DIR=str(tmp_path),
               FLEETGRAPH_METRICS_INTERVAL="2")
    proc = await asyncio.create_subprocess_exec(
        FLEETGRAPH, "demo", "--port", str(port), "--fleet", "small", "--seed", "3",
        "--history-days", "1", env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    try:
        token = None
        async with asyncio.timeout(60):
            while token is None:
                line = (await proc.stdout.readline()).decode()
                assert line, "demo exited before printing its token"
                if found := re.search(r"Bearer (fgt_[A-Za-z0-9_-]+)", line):
                    token = found.group(1)
        assert (tmp_path / "demo.key").stat().st_mode & 0o777 == 0o600
        drain = asyncio.create_task(proc.stdout.read())
        node = None
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            async with asyncio.timeout(60):
                while True:
                    body = (await http.post("/graphql", json={"query": QUERY},
                                            headers={"Authorization": f"Bearer {token}"})).json()
                    node = body["data"]["clusters"]["edges"][0]["node"]
                    if node["status"] == "ACTIVE" and node["health"]["podsTotal"] > 0:
                        break
                    await asyncio.sleep(0.5)
        assert node["name"] == "demo-cluster"
        assert node["health"]["nodesTotal"] == 3 and node["namespaces"]["totalCount"] >= 4
        assert node["health"]["podsRunning"] > 0
        # The day before the demo started is costed already (final), and so is the running
        # hour (provisional). Just past an hour's turn the new hour has no row until the
        # scheduler's next tick (every 60 s), so the running hour is asked for until it has.
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            async def costs(start: datetime, end: datetime) -> dict[str, Any]:
                answer: dict[str, Any] = (await http.post(
                    "/graphql", headers={"Authorization": f"Bearer {token}"},
                    json={"query": COSTS, "variables": {
                        "from": start.isoformat(), "to": end.isoformat()}})).json()
                return answer

            async with asyncio.timeout(90):
                while True:
                    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
                    answers = [await costs(hour - timedelta(days=2), hour - timedelta(hours=1)),
                               await costs(hour, hour + timedelta(hours=1))]
                    if answers[1]["data"]["costs"]:
                        break
                    await asyncio.sleep(1)
        past, running = (a["data"]["costs"] for a in answers)
        assert past and not any(r["provisional"] for r in past)
        assert sum(Decimal(r["totalCost"]) for r in past) > 0
        assert running and all(r["provisional"] for r in running)
        body = answers[0]
        assert body["data"]["budgets"] == [{"scopeValue": "payments"}]
    finally:
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(15):
            code = await proc.wait()
    output = (await drain).decode() if "drain" in locals() else ""
    assert code == 0, output[-2000:]
    assert token not in output.replace(token or "", "", 1)
