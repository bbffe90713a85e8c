"""The ``fleetgraph`` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from app.db import database_url_or_embedded
from app.settings import Settings


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from app.server import create_app

    settings = settings.with_(sync_enabled=settings.sync_enabled and not args.no_sync)
    app = create_app(settings, migrate=not args.no_migrate)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", lifespan="on")
    return 0


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from app.migrations import upgrade_to_head

    with database_url_or_embedded(settings.database_url, settings.data_dir) as url:
        upgrade_to_head(url)
    print("database migrated to head")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fleetgraph", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the GraphQL API (and sync clusters)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--no-migrate", action="store_true", help="do not migrate at start")
    serve.add_argument("--no-sync", action="store_true", help="serve without syncing clusters")
    serve.set_defaults(handler=_serve)

    migrate = sub.add_parser("migrate", help="upgrade the database to the latest revision")
    migrate.set_defaults(handler=_migrate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args = build_parser().parse_args(argv)
    result: int = args.handler(args, Settings.from_env())
    return result


if __name__ == "__main__":
    sys.exit(main())
