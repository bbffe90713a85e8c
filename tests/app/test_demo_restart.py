"""Restarting ``fleetgraph demo`` as a newcomer does: the same admin token again (no pile of
valid ones), a new one only once it was revoked, and no warning about the previous run's
kubesim port (the cluster is re-keyed before its sync starts)."""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path

import asyncpg
import httpx

from app.tenancy import revoke_token
from tests.ops.process import FLEETGRAPH, environment, free_port

QUERY = "{ clusters { edges { node { status } } } }"


async def _demo_run(database_url: str, data_dir: Path) -> tuple[str, str]:
    """One demo start until its cluster is ACTIVE over GraphQL, then Ctrl-C; returns
    (token, everything it printed)."""
    port = free_port()
    env = environment(DATABASE_URL=database_url, FLEETGRAPH_DATA_DIR=str(data_dir))
    proc = await asyncio.create_subprocess_exec(
        FLEETGRAPH, "demo", "--port", str(port), "--fleet", "small", "--seed", "2",
        "--history-days", "0", env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    assert proc.stdout is not None
    output: list[str] = []
    token = None
    try:
        async with asyncio.timeout(90):
            while token is None:
                line = (await proc.stdout.readline()).decode()
                assert line, "demo exited early:\n" + "".join(output)
                output.append(line)
                if found := re.search(r"Bearer (fgt_[A-Za-z0-9_-]+)", line):
                    token = found.group(1)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                while True:
                    body = (await http.post("/graphql", json={"query": QUERY}, headers={
                        "Authorization": f"Bearer {token}"})).json()
                    if body["data"]["clusters"]["edges"][0]["node"]["status"] == "ACTIVE":
                        break
                    await asyncio.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, "".join(output) + rest.decode()
    assert token is not None
    return token, "".join(output) + rest.decode()


async def _active_demo_tokens(database_url: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetch(
            "SELECT t.id FROM api_tokens t JOIN organizations o ON o.id = t.organization_id "
            "WHERE o.slug = 'demo' AND t.revoked_at IS NULL")
    finally:
        await conn.close()


async def test_a_restarted_demo_reuses_its_token_and_warns_about_nothing(
    isolated_database_url: str, tmp_path: Path
) -> None:
    first, _ = await _demo_run(isolated_database_url, tmp_path)
    token_file = tmp_path / "demo.token"
    assert token_file.read_text().strip() == first
    assert token_file.stat().st_mode & 0o777 == 0o600

    second, output = await _demo_run(isolated_database_url, tmp_path)
    assert second == first
    assert "WARNING" not in output and "unreachable" not in output, output
    [active] = await _active_demo_tokens(isolated_database_url)

    conn = await asyncpg.connect(isolated_database_url)
    try:
        await revoke_token(conn, token_id=str(active["id"]))
    finally:
        await conn.close()
    third, _ = await _demo_run(isolated_database_url, tmp_path)
    assert third != first and token_file.read_text().strip() == third
    assert len(await _active_demo_tokens(isolated_database_url)) == 1
