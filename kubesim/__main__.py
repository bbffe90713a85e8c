"""``python -m kubesim``: serve a simulated cluster until stopped (the demo's backend).

Example::

    python -m kubesim --port 6443 --fleet medium --seed 7 --kubeconfig-out /tmp/kc --realtime
    kubectl --kubeconfig /tmp/kc get pods -A
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence

from kubesim.fleet import FLEETS
from kubesim.server import KubeSim


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m kubesim", description="Kubernetes API emulator with a simulated fleet"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--fleet", choices=[*FLEETS, "none"], default="small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--token", default=None, help="bearer token clients must send (random if omitted)"
    )
    parser.add_argument(
        "--kubeconfig-out", default=None, help="write a kubeconfig for this server here"
    )
    parser.add_argument(
        "--realtime", action="store_true", help="let the fleet change over wall-clock time"
    )
    parser.add_argument(
        "--speed", type=float, default=1.0, help="simulated seconds per real second with --realtime"
    )
    parser.add_argument("--history-window", type=int, default=10_000)
    parser.add_argument(
        "--plain-http",
        action="store_true",
        help="serve http instead of https (kubectl sends no token over plain http)",
    )
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> None:
    sim = KubeSim(
        fleet=None if args.fleet == "none" else args.fleet,
        seed=args.seed,
        token=args.token,
        host=args.host,
        port=args.port,
        history_window=args.history_window,
        tls=not args.plain_http,
    )
    await sim.serve()
    if args.kubeconfig_out:
        sim.write_kubeconfig(args.kubeconfig_out)
    if args.realtime:
        sim.start_realtime(speed=args.speed)
    pods = len(list(sim.store.iter_entries("pods")))
    print(
        f"kubesim serving {sim.url} (fleet={args.fleet}, seed={args.seed}, pods={pods})", flush=True
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await sim.stop()


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(run(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
