"""The ``fleetgraph`` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence

import asyncpg

from app.db import database_url_or_embedded
from app.settings import Settings


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from app.http_protocol import uvicorn_http_options
    from app.server import create_app
    from app.vault import VaultError


    settings = settings.with_(sync_enabled=settings.sync_enabled and not args.no_sync)
    try:
        app = create_app(settings, migrate=not args.no_migrate)
    except VaultError as exc:
        return _fail(str(exc))
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", lifespan="on",
                **uvicorn_http_options(settings))
    return 0


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from app.demo import demo_key, run_demo

    if not settings.encryption_keys:
        settings = settings.with_(encryption_keys=demo_key(settings.data_dir))
    settings = settings.with_(allow_local_clusters=True)  # the demo's kubesim is on 127.0.0.1
    # uvicorn shuts the server down gracefully on Ctrl-C, then re-raises the signal.
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_demo(settings, host=args.host, port=args.port, fleet=args.fleet,
                             seed=args.seed))
    return 0


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from app.migrations import upgrade_to_head

    with database_url_or_embedded(settings.database_url, settings.data_dir) as url:
        upgrade_to_head(url)
    print("database migrated to head")
    return 0


def _with_pool(settings: Settings, work: Callable[[asyncpg.Pool], Awaitable[int]]) -> int:
    """Run one async command against the database (migrated first), then close everything."""
    from app.db import close_pool, create_pool
    from app.migrations import upgrade_to_head

    with database_url_or_embedded(settings.database_url, settings.data_dir) as url:
        upgrade_to_head(url)

        async def run() -> int:
            pool = await create_pool(url, max_size=2)
            try:
                return await work(pool)
            finally:
                await close_pool(pool)

        return asyncio.run(run())


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _tenancy(settings: Settings,
             act: Callable[[asyncpg.Connection], Awaitable[str]]) -> int:
    """Run one tenancy operation; a refusal prints its reason and exits 2."""
    from app.tenancy import TenancyError

    async def work(pool: asyncpg.Pool) -> int:
        try:
            async with pool.acquire() as conn:
                print(await act(conn))
        except TenancyError as exc:
            return _fail(str(exc))
        return 0

    return _with_pool(settings, work)


def _org_create(args: argparse.Namespace, settings: Settings) -> int:
    from app.tenancy import create_organization

    async def act(conn: asyncpg.Connection) -> str:
        org_id = await create_organization(conn, slug=args.slug, name=args.name)
        return f"organization {args.slug} created ({org_id})"

    return _tenancy(settings, act)


def _token_create(args: argparse.Namespace, settings: Settings) -> int:
    from app.tenancy import create_token

    async def act(conn: asyncpg.Connection) -> str:
        issued = await create_token(conn, org_slug=args.org, role=args.role,
                                    name=args.name or "")
        print(f"token id: {issued.id}", file=sys.stderr)
        print("this token is shown once; store it now:", file=sys.stderr)
        return issued.token

    return _tenancy(settings, act)


def _token_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from app.tenancy import revoke_token

    async def act(conn: asyncpg.Connection) -> str:
        await revoke_token(conn, token_id=args.id)
        return f"token {args.id} revoked"

    return _tenancy(settings, act)


def _vault_generate_key(args: argparse.Namespace, settings: Settings) -> int:
    from app.vault import generate_key

    print(generate_key())
    return 0


def _vault_rotate(args: argparse.Namespace, settings: Settings) -> int:
    from app.credentials import rotate_secrets
    from app.vault import Vault, VaultError

    try:
        vault = Vault.from_env(settings.encryption_keys)
    except VaultError as exc:
        return _fail(str(exc))

    async def work(pool: asyncpg.Pool) -> int:
        try:
            report = await rotate_secrets(pool, vault)
        except VaultError as exc:
            return _fail(str(exc))
        print(f"re-encrypted {report.kubeconfigs} kubeconfig(s) and {report.helm_values} "
              f"Helm value set(s) with key {vault.primary_key_id}")
        return 0

    return _with_pool(settings, work)


def _schema(args: argparse.Namespace, settings: Settings) -> int:
    from schema import build_schema

    print(build_schema(settings).as_str())
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

    demo = sub.add_parser("demo", help="serve with a simulated fleet registered and syncing")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--fleet", default="small", choices=["small", "medium", "large"])
    demo.add_argument("--seed", type=int, default=7)
    demo.set_defaults(handler=_demo)

    migrate = sub.add_parser("migrate", help="upgrade the database to the latest revision")
    migrate.set_defaults(handler=_migrate)

    org = sub.add_parser("org", help="organizations").add_subparsers(dest="org_cmd", required=True)
    org_create = org.add_parser("create", help="create an organization")
    org_create.add_argument("slug")
    org_create.add_argument("--name")
    org_create.set_defaults(handler=_org_create)

    token = sub.add_parser("token", help="API tokens").add_subparsers(dest="token_cmd",
                                                                       required=True)
    token_create = token.add_parser("create", help="issue a token (printed once)")
    token_create.add_argument("--org", required=True)
    token_create.add_argument("--role", required=True, choices=["viewer", "operator", "admin"])
    token_create.add_argument("--name")
    token_create.set_defaults(handler=_token_create)
    token_revoke = token.add_parser("revoke", help="revoke a token by id")
    token_revoke.add_argument("id")
    token_revoke.set_defaults(handler=_token_revoke)

    vault = sub.add_parser("vault", help="encryption keys").add_subparsers(dest="vault_cmd",
                                                                           required=True)
    vault.add_parser("generate-key", help="print a new random key").set_defaults(
        handler=_vault_generate_key)
    vault.add_parser("rotate", help="re-encrypt every stored secret with the first key"
                     ).set_defaults(handler=_vault_rotate)

    sub.add_parser("schema", help="print the GraphQL SDL").set_defaults(handler=_schema)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # The client library logs whole response bodies (Secrets included) at DEBUG: never allow it.
    logging.getLogger("kubernetes_asyncio").setLevel(logging.INFO)
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except ValueError as exc:  # a malformed setting: its name and the reason, no traceback
        return _fail(str(exc))
    result: int = args.handler(args, settings)
    return result


if __name__ == "__main__":
    sys.exit(main())
