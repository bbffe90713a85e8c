"""Running ``fleetgraph`` as an operator does: the installed console script, a real process,
settings only from its environment."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

FLEETGRAPH = str(Path(sys.executable).with_name("fleetgraph"))


def environment(**settings: str) -> dict[str, str]:
    """This process's environment without any FleetGraph setting of the shell, plus these."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("FLEETGRAPH_") and k not in ("DATABASE_URL", "BYOK_ENCRYPTION_KEY")}
    env.update(settings)
    return env


COMMAND_TIMEOUT_S = 90


def fleetgraph(*args: str, stdin: str | None = None,
               **settings: str) -> subprocess.CompletedProcess[str]:
    """Run one command with exactly these settings; its output, never raising on exit codes."""
    return subprocess.run([FLEETGRAPH, *args], env=environment(**settings), input=stdin,
                          capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S,
                          check=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def fleetgraph_async(*args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    """:func:`fleetgraph` without blocking the test's loop, for commands that talk to a
    kubesim served by that loop."""
    proc = await asyncio.create_subprocess_exec(
        FLEETGRAPH, *args, env=environment(**settings),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), COMMAND_TIMEOUT_S)
    assert proc.returncode is not None
    return subprocess.CompletedProcess([FLEETGRAPH, *args], proc.returncode,
                                       stdout.decode(), stderr.decode())
