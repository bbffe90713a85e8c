"""The ``fleetgraph`` command line: serve, demo, migrate, and the operator's commands for
organizations, tokens, keys and clusters.

Every command reads its settings from the environment first and checks all of them: a wrong
value, a database that cannot be reached or a bad key ends the command with one paragraph
naming the setting and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import difflib
import logging
import os
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from app.db import DatabaseUnavailable, check_database, database_url_or_embedded
from app.logs import LOG_FORMATS, LOG_LEVELS, configure_logging
from app.metrics import package_version
from app.settings import Settings

log = logging.getLogger("fleetgraph.cli")


@contextlib.contextmanager
def _database(settings: Settings) -> Iterator[str]:
    """The database URL to use (the embedded server started if none is set), checked to be
    reachable first."""
    with database_url_or_embedded(settings.database_url, settings.data_dir) as url:
        asyncio.run(check_database(url))
        yield url


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from app.http_protocol import uvicorn_http_options
    from app.server import create_app
    from app.vault import VaultError

    settings = settings.with_(sync_enabled=settings.sync_enabled and not args.no_sync)
    # The database is started (if embedded) and checked here, before uvicorn, so a server
    # that cannot start says why in one line instead of failing inside the lifespan.
    with _database(settings) as url:
        try:
            app = create_app(settings.with_(database_url=url), migrate=not args.no_migrate)
        except VaultError as exc:
            return _fail(str(exc))
        # log_config=None: uvicorn's loggers go through our handler (JSON lines under serve).
        uvicorn.run(app, host=args.host, port=args.port, log_config=None,
                    log_level=settings.log_level.lower(), lifespan="on",
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
                             seed=args.seed, history_days=args.history_days))
    return 0


# Held by ``fleetgraph migrate`` while it upgrades: replicas that start together (the
# Deployment's init containers) take turns, and the later ones find the database at head.
MIGRATION_LOCK = 0x466C_6565_744D_6967  # "FleetMig"


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from app.migrations import upgrade_to_head_async

    async def locked_upgrade(url: str) -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
            await upgrade_to_head_async(url)
        finally:
            await conn.close()  # the lock goes with the session

    with _database(settings) as url:
        asyncio.run(locked_upgrade(url))
    print("database migrated to head")
    return 0


def _with_pool(settings: Settings, work: Callable[[asyncpg.Pool], Awaitable[int]]) -> int:
    """Run one async command against the database (migrated first), then close everything."""
    from app.db import close_pool, create_pool
    from app.migrations import upgrade_to_head

    with _database(settings) as url:
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


# --- clusters ------------------------------------------------------------------------------
#
# The same paths as the GraphQL mutations (resolvers.cluster_mutations): the kubeconfig goes
# through the sanitizer and the network policy, is sealed by the vault, and the registry
# NOTIFY tells every running server's supervisor, so a cluster registered here starts syncing
# without a restart. The CLI acts as the organization's admin, as an operator with database
# access can anyway; it holds no token, hence the nil token id.

CLI_TOKEN_ID = uuid.UUID(int=0)


class _ClusterCommandError(Exception):
    """A cluster command refused; the message says which argument and why."""


@dataclass(frozen=True)
class _Org:
    """The organization a cluster command acts in."""

    pool: asyncpg.Pool
    settings: Settings
    id: uuid.UUID
    slug: str

    @classmethod
    async def find(cls, pool: asyncpg.Pool, settings: Settings, slug: str) -> _Org:
        org_id = await pool.fetchval("SELECT id FROM organizations WHERE slug = $1", slug)
        if org_id is None:
            raise _ClusterCommandError(f"--org: no organization with slug {slug!r}")
        return cls(pool, settings, org_id, slug)

    def context(self) -> Any:
        """A resolver context acting as this organization's admin (needs the vault key)."""
        from app.auth import Principal, Role
        from app.vault import Vault
        from resolvers.context import Context

        return Context(
            pool=self.pool, settings=self.settings,
            vault=Vault.from_env(self.settings.encryption_keys), cursor_key=b"",
            principal=Principal(organization_id=self.id, organization_slug=self.slug,
                                role=Role.ADMIN, token_id=CLI_TOKEN_ID),
        )

    async def cluster(self, ref: str) -> uuid.UUID:
        """A cluster of this organization, by id or by name."""
        try:
            wanted: uuid.UUID | None = uuid.UUID(ref)
        except ValueError:
            wanted = None
        found: uuid.UUID | None = await self.pool.fetchval(
            "SELECT id FROM k8s_clusters WHERE organization_id = $1 AND (id = $2 OR name = $3)",
            self.id, wanted, ref)
        if found is None:
            raise _ClusterCommandError(f"cluster: no cluster {ref!r} in organization "
                                       f"{self.slug!r}")
        return found


def _cluster_command(settings: Settings, org: str, act: Callable[[_Org], Awaitable[int]]) -> int:
    """Run one cluster command in ``org``; refusals print their reason and exit 2."""
    from app.vault import VaultError
    from resolvers.cluster_mutations import InvalidInputError
    from resolvers.errors import ApiError

    async def work(pool: asyncpg.Pool) -> int:
        try:
            return await act(await _Org.find(pool, settings, org))
        except InvalidInputError as exc:
            for problem in exc.problems:
                print(f"error: {_cli_field(problem.field)}: {problem.message}", file=sys.stderr)
            return 2
        except (_ClusterCommandError, VaultError, ApiError) as exc:
            return _fail(str(exc))

    return _with_pool(settings, work)


def _cli_field(field: str) -> str:
    """The CLI option a mutation's input field is given with."""
    head, _, rest = field.partition(".")
    option = {"kubeconfig": "--kubeconfig", "context": "--context", "name": "--name",
              "provider": "--provider", "labels": "--label", "region": "--region"}.get(head)
    return f"{option} ({rest})" if option and rest else option or field


def _labels(pairs: Sequence[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise _ClusterCommandError(f"--label: {pair!r} is not KEY=VALUE")
        labels[key] = value
    return labels


def _cluster_register(args: argparse.Namespace, settings: Settings) -> int:
    from resolvers import cluster_mutations

    path = Path(args.kubeconfig)
    try:
        text = sys.stdin.read() if args.kubeconfig == "-" else path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        return _fail(f"--kubeconfig: cannot read {args.kubeconfig}: "
                     f"{exc.strerror if isinstance(exc, OSError) else 'not UTF-8 text'}")

    async def act(org: _Org) -> int:
        row = await cluster_mutations.register_cluster(
            org.context(),
            cluster_mutations.ClusterInputArgs(
                name=args.name, provider=args.provider, kubeconfig=text, context=args.context,
                region=args.region, labels=_labels(args.label),
            ),
        )
        print(f"cluster {row['name']} registered in {args.org} ({row['id']}); running "
              "servers start syncing it now")
        return 0

    return _cluster_command(settings, args.org, act)


_LIST_SQL = """
SELECT c.id, o.slug AS org, c.name, c.provider, c.region, c.status, c.health_status,
       c.kubernetes_version, c.last_synced_at, c.last_sync_error, c.metrics_available,
       c.api_server_url, c.context_name, c.labels, c.sync_progress, c.created_at
  FROM k8s_clusters c JOIN organizations o ON o.id = c.organization_id
 WHERE ($1::text IS NULL OR o.slug = $1) AND ($2::uuid IS NULL OR c.id = $2)
 ORDER BY o.slug, c.name
"""


def _jsonable(row: asyncpg.Record) -> dict[str, Any]:
    return orjson.loads(orjson.dumps(dict(row), default=str))


def _cluster_list(args: argparse.Namespace, settings: Settings) -> int:
    async def work(pool: asyncpg.Pool) -> int:
        rows = await pool.fetch(_LIST_SQL, args.org, None)
        if args.org and not rows and not await pool.fetchval(
                "SELECT 1 FROM organizations WHERE slug = $1", args.org):
            return _fail(f"--org: no organization with slug {args.org!r}")
        if args.json:
            print(orjson.dumps([_jsonable(r) for r in rows], option=orjson.OPT_INDENT_2).decode())
            return 0
        table = [("ID", "ORG", "NAME", "PROVIDER", "STATUS", "HEALTH", "LAST SYNCED")]
        table += [(str(r["id"]), r["org"], r["name"], r["provider"], r["status"],
                   r["health_status"] or "-",
                   r["last_synced_at"].isoformat(timespec="seconds")
                   if r["last_synced_at"] else "never") for r in rows]
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
        for row in table:
            print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
                  .rstrip())
        return 0

    return _with_pool(settings, work)


def _cluster_show(args: argparse.Namespace, settings: Settings) -> int:
    async def act(org: _Org) -> int:
        row = await org.pool.fetchrow(_LIST_SQL, org.slug, await org.cluster(args.cluster))
        print(orjson.dumps(_jsonable(row), option=orjson.OPT_INDENT_2).decode())
        return 0

    return _cluster_command(settings, args.org, act)


def _cluster_delete(args: argparse.Namespace, settings: Settings) -> int:
    from resolvers import cluster_mutations

    async def act(org: _Org) -> int:
        cluster_id = await org.cluster(args.cluster)
        deleted = await cluster_mutations.delete_cluster(org.context(), cluster_id)
        print(f"cluster {args.cluster} deleted ({deleted}); its sync stops on every server")
        return 0

    return _cluster_command(settings, args.org, act)


def _cluster_test(args: argparse.Namespace, settings: Settings) -> int:
    from resolvers import cluster_mutations

    async def act(org: _Org) -> int:
        cluster_id = await org.cluster(args.cluster)
        probe = await cluster_mutations.test_connection(org.context(), cluster_id)
        if probe.ok:
            print(f"reachable: Kubernetes {probe.server_version} in "
                  f"{probe.latency_ms or 0:.0f} ms")
            return 0
        state = "reachable but" if probe.reachable else "unreachable:"
        print(f"{state} {probe.error}", file=sys.stderr)
        return 1

    return _cluster_command(settings, args.org, act)


def _common_options() -> argparse.ArgumentParser:
    """Options every command takes, before or after its name. SUPPRESS keeps a subcommand
    from resetting a value given before it."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--log-format", choices=LOG_FORMATS, default=argparse.SUPPRESS,
        help="log as JSON lines or text (default: FLEETGRAPH_LOG_FORMAT, else json for "
             "serve and text for every other command)")
    common.add_argument(
        "--log-level", type=str.upper, choices=LOG_LEVELS, default=argparse.SUPPRESS,
        help="the lowest level logged (default: FLEETGRAPH_LOG_LEVEL, else INFO)")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common_options()
    parser = argparse.ArgumentParser(
        prog="fleetgraph", parents=[common],
        description="FleetGraph: a Kubernetes fleet's inventory, health and cost as one "
                    "GraphQL graph. Settings come from the environment (see README).")
    parser.add_argument("--version", action="version", version=f"fleetgraph {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(parent: Any, name: str, help_text: str, **kwargs: Any) -> argparse.ArgumentParser:
        made: argparse.ArgumentParser = parent.add_parser(
            name, help=help_text, description=help_text, parents=[common], **kwargs)
        return made

    serve = command(sub, "serve", "serve the GraphQL API (and sync clusters)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1; 0.0.0.0 in a container)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    serve.add_argument("--no-migrate", action="store_true",
                       help="do not migrate the database at start")
    serve.add_argument("--no-sync", action="store_true",
                       help="serve without syncing clusters (another replica syncs them)")
    serve.set_defaults(handler=_serve, default_log_format="json")

    demo = command(sub, "demo", "serve with a simulated fleet registered and syncing")
    demo.add_argument("--host", default="127.0.0.1", help="address to listen on")
    demo.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    demo.add_argument("--fleet", default="small", choices=["small", "medium", "large"],
                      help="size of the simulated fleet (default small)")
    demo.add_argument("--seed", type=int, default=7,
                      help="random seed of the simulation, for a repeatable fleet (default 7)")
    demo.add_argument("--history-days", type=int, default=None, metavar="DAYS",
                      help="days of simulated history (usage, churn, cost) the fleet starts "
                           "with on a fresh database; 0 for none (default: 3 for the small "
                           "fleet, 1 for medium, 0 for large)")
    demo.set_defaults(handler=_demo)

    command(sub, "migrate", "upgrade the database to the latest revision").set_defaults(
        handler=_migrate)

    org = command(sub, "org", "organizations").add_subparsers(
        dest="org_cmd", required=True, metavar="COMMAND")
    org_create = command(org, "create", "create an organization")
    org_create.add_argument("slug", help="the organization's slug: lowercase letters, digits, '-'")
    org_create.add_argument("--name", help="display name (default: the slug)")
    org_create.set_defaults(handler=_org_create)

    token = command(sub, "token", "API tokens").add_subparsers(
        dest="token_cmd", required=True, metavar="COMMAND")
    token_create = command(token, "create", "issue a token (printed once)")
    token_create.add_argument("--org", required=True, help="slug of the token's organization")
    token_create.add_argument("--role", required=True, choices=["viewer", "operator", "admin"],
                              help="what the token may do")
    token_create.add_argument("--name", help="a note saying what the token is for")
    token_create.set_defaults(handler=_token_create)
    token_revoke = command(token, "revoke", "revoke a token by id")
    token_revoke.add_argument("id", help="the token's id (printed when it was created)")
    token_revoke.set_defaults(handler=_token_revoke)

    vault = command(sub, "vault", "encryption keys").add_subparsers(
        dest="vault_cmd", required=True, metavar="COMMAND")
    command(vault, "generate-key", "print a new random key").set_defaults(
        handler=_vault_generate_key)
    command(vault, "rotate", "re-encrypt every stored secret with the first key").set_defaults(
        handler=_vault_rotate)

    cluster = command(sub, "cluster", "registered Kubernetes clusters").add_subparsers(
        dest="cluster_cmd", required=True, metavar="COMMAND")
    register = command(cluster, "register",
                       "register a cluster from a kubeconfig (sanitized, then sealed)")
    register.add_argument("--org", required=True, help="slug of the owning organization")
    register.add_argument("--name", required=True,
                          help="cluster name: lowercase letters, digits and '-', unique per org")
    register.add_argument("--provider", required=True,
                          choices=["eks", "gke", "aks", "k3s", "vanilla"],
                          help="where the cluster runs (sets its default prices)")
    register.add_argument("--kubeconfig", required=True, metavar="FILE",
                          help="kubeconfig file ('-' for standard input); only inline "
                               "credentials are accepted (no exec, no file paths)")
    register.add_argument("--context", help="kubeconfig context to use (default: current)")
    register.add_argument("--region", help="the cluster's region, for grouping")
    register.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                          help="a label on the cluster (repeatable)")
    register.set_defaults(handler=_cluster_register)
    cluster_list = command(cluster, "list", "list clusters with their sync state")
    cluster_list.add_argument("--org", help="only this organization's clusters (default: all)")
    cluster_list.add_argument("--json", action="store_true", help="print JSON instead of a table")
    cluster_list.set_defaults(handler=_cluster_list)
    for name, help_text, handler in (
        ("show", "print one cluster's details as JSON", _cluster_show),
        ("delete", "delete a cluster and everything synced from it", _cluster_delete),
        ("test", "check that the stored kubeconfig reaches the API server (exit 1 if not)",
         _cluster_test),
    ):
        one = command(cluster, name, help_text)
        one.add_argument("cluster", help="the cluster's id or name")
        one.add_argument("--org", required=True, help="slug of the owning organization")
        one.set_defaults(handler=handler)

    command(sub, "schema", "print the GraphQL SDL").set_defaults(handler=_schema)
    return parser


class _ReadNames(dict[str, str]):
    """The environment, remembering which names the settings asked for."""

    def __init__(self, env: Mapping[str, str]) -> None:
        super().__init__(env)
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return super().__getitem__(key)


def _settings_from(env: Mapping[str, str]) -> tuple[Settings, set[str]]:
    """Every setting parsed and checked; returns the names read, for the typo warning. The
    cost engine's on-prem price sheet is read later, so it is checked here too."""
    from app.vault import Vault, VaultError
    from cost.pricing import ONPREM_PRICING_ENV, load_onprem_sheet

    recorded = _ReadNames(env)
    settings = Settings.from_env(recorded)
    if settings.encryption_keys:
        try:
            Vault.from_env(settings.encryption_keys)
        except VaultError as exc:  # its message names BYOK_ENCRYPTION_KEY and the fix
            raise ValueError(str(exc)) from None
    try:
        load_onprem_sheet(recorded)
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"{ONPREM_PRICING_ENV}: {exc}. Expected an OpenCost-style price sheet as a JSON "
            "object, inline or in a readable file named by the setting.") from None
    return settings, recorded.asked


def _warn_misspelt(env: Mapping[str, str], known: set[str]) -> None:
    """A FLEETGRAPH_ variable that is almost a setting's name is a typo that would otherwise
    be ignored in silence."""
    names = sorted(n for n in known if n.startswith("FLEETGRAPH_"))
    for name in sorted(env):
        if name.startswith("FLEETGRAPH_") and name not in known:
            close = difflib.get_close_matches(name, names, n=1, cutoff=0.85)
            if close:
                log.warning("%s is not a FleetGraph setting and is ignored; did you mean %s?",
                            name, close[0])


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging()  # text at INFO until the settings say otherwise
    args = build_parser().parse_args(argv)
    try:
        settings, known = _settings_from(os.environ)
    except ValueError as exc:  # a malformed setting: its name and the reason, no traceback
        return _fail(str(exc))
    settings = settings.with_(
        log_format=getattr(args, "log_format", None) or settings.log_format
        or getattr(args, "default_log_format", "text"),
        log_level=getattr(args, "log_level", None) or settings.log_level,
    )
    configure_logging(fmt=settings.log_format or "text", level=settings.log_level)
    _warn_misspelt(os.environ, known)
    try:
        result: int = args.handler(args, settings)
    except DatabaseUnavailable as exc:
        return _fail(str(exc))
    return result


if __name__ == "__main__":
    sys.exit(main())
