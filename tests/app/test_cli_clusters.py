"""``fleetgraph cluster …`` as an operator runs it: real processes against the tests' database
and a kubesim started here, through the same sanitizer, vault, network policy and registry
NOTIFY as the ``registerCluster`` mutation."""

from __future__ import annotations

import argparse
import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
import yaml

from app.cli import build_parser
from app.metrics import package_version
from app.vault import Vault, generate_key
from kubesim import KubeSim
from sync.cluster_sync import ClusterRecord, open_kubeconfig
from tests.factories import make_org
from tests.ops.process import fleetgraph, fleetgraph_async


@pytest.fixture
async def sim() -> AsyncIterator[KubeSim]:
    async with KubeSim.start(fleet="small", seed=5) as running:
        yield running


async def test_register_list_show_test_and_delete_a_cluster(
    database_url: str, db_pool: asyncpg.Pool, sim: KubeSim, tmp_path: Path
) -> None:
    key = generate_key()
    env = {"DATABASE_URL": database_url, "BYOK_ENCRYPTION_KEY": key,
           "FLEETGRAPH_ALLOW_LOCAL_CLUSTERS": "true"}  # kubesim listens on 127.0.0.1
    slug = f"cli-{uuid.uuid4().hex[:6]}"
    async with db_pool.acquire() as conn:
        await make_org(conn, slug)
    kubeconfig = tmp_path / "kubeconfig.yaml"
    kubeconfig.write_text(yaml.safe_dump(sim.kubeconfig))

    listener = await asyncpg.connect(database_url)
    notices: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener("fleetgraph_registry", lambda *a: notices.put_nowait(a[-1]))
    try:
        registered = await fleetgraph_async(
            "cluster", "register", "--org", slug, "--name", "prod-eu", "--provider", "k3s",
            "--kubeconfig", str(kubeconfig), "--label", "env=prod", "--region", "eu-west-1",
            **env)
        assert registered.returncode == 0, registered.stderr
        notice = orjson.loads(await asyncio.wait_for(notices.get(), 5))
    finally:
        await listener.close()
    row = await db_pool.fetchrow(
        "SELECT c.* FROM k8s_clusters c JOIN organizations o ON o.id = c.organization_id "
        "WHERE o.slug = $1 AND c.name = 'prod-eu'", slug)
    assert notice == {"cluster_id": str(row["id"]), "action": "registered"}
    assert str(row["id"]) in registered.stdout
    assert (row["provider"], row["region"], row["labels"]) == ("k3s", "eu-west-1", {"env": "prod"})
    assert row["api_server_url"] == sim.url and row["status"] == "pending"
    # Sealed by the vault under this cluster's id, exactly like the mutation does.
    opened = open_kubeconfig(Vault.from_env(key), ClusterRecord.from_row(row))
    assert opened.token == sim.token
    assert sim.token.encode() not in bytes(row["kubeconfig_encrypted"])

    listed = await fleetgraph_async("cluster", "list", "--org", slug, "--json", **env)
    assert listed.returncode == 0, listed.stderr
    [entry] = orjson.loads(listed.stdout)
    assert (entry["id"], entry["name"], entry["status"]) == (str(row["id"]), "prod-eu", "pending")
    table = await fleetgraph_async("cluster", "list", **env)
    assert any(line.split()[:3] == [str(row["id"]), slug, "prod-eu"]
               for line in table.stdout.splitlines())

    for ref in ("prod-eu", str(row["id"])):
        shown = await fleetgraph_async("cluster", "show", ref, "--org", slug, **env)
        assert shown.returncode == 0, shown.stderr
        assert orjson.loads(shown.stdout)["api_server_url"] == sim.url
        assert sim.token not in shown.stdout

    tested = await fleetgraph_async("cluster", "test", "prod-eu", "--org", slug, **env)
    assert tested.returncode == 0, tested.stderr
    assert tested.stdout.startswith("reachable: Kubernetes v")
    assert await db_pool.fetchval("SELECT kubernetes_version FROM k8s_clusters WHERE id = $1",
                                  row["id"]) in tested.stdout
    async with sim.outage():
        down = await fleetgraph_async("cluster", "test", "prod-eu", "--org", slug, **env)
    assert down.returncode == 1 and "unreachable" in down.stderr, down.stderr

    elsewhere = await fleetgraph_async("cluster", "delete", "prod-eu", "--org", "no-such-org",
                                       **env)
    assert elsewhere.returncode == 2 and "--org: no organization" in elsewhere.stderr
    deleted = await fleetgraph_async("cluster", "delete", "prod-eu", "--org", slug, **env)
    assert deleted.returncode == 0, deleted.stderr
    assert await db_pool.fetchval("SELECT count(*) FROM k8s_clusters WHERE id = $1",
                                  row["id"]) == 0
    gone = await fleetgraph_async("cluster", "show", "prod-eu", "--org", slug, **env)
    assert gone.returncode == 2 and "no cluster 'prod-eu'" in gone.stderr


async def test_register_refuses_what_the_mutation_refuses(
    database_url: str, db_pool: asyncpg.Pool, sim: KubeSim, tmp_path: Path
) -> None:
    env = {"DATABASE_URL": database_url, "BYOK_ENCRYPTION_KEY": generate_key()}
    slug = f"cli-{uuid.uuid4().hex[:6]}"
    async with db_pool.acquire() as conn:
        await make_org(conn, slug)
    hostile: dict[str, Any] = sim.kubeconfig
    hostile["users"][0]["user"] = {"exec": {"command": "/bin/sh", "args": ["-c", "id"],
                                            "apiVersion": "client.authentication.k8s.io/v1"}}
    path = tmp_path / "hostile.yaml"
    path.write_text(yaml.safe_dump(hostile))
    args = ("cluster", "register", "--org", slug, "--name", "bad", "--provider", "k3s")

    refused = await fleetgraph_async(*args, "--kubeconfig", str(path), **env)
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: --kubeconfig (users[")
    assert "exec" in refused.stderr and "Traceback" not in refused.stderr
    # The network policy too: without FLEETGRAPH_ALLOW_LOCAL_CLUSTERS, loopback is refused.
    path.write_text(yaml.safe_dump(sim.kubeconfig))
    local = await fleetgraph_async(*args, "--kubeconfig", str(path), **env)
    assert local.returncode == 2 and local.stderr.startswith("error: --kubeconfig (server)")
    missing = await fleetgraph_async(*args, "--kubeconfig", str(tmp_path / "nope"), **env)
    assert missing.returncode == 2 and "--kubeconfig: cannot read" in missing.stderr
    no_key = await fleetgraph_async(*args, "--kubeconfig", str(path),
                                    DATABASE_URL=database_url)
    assert no_key.returncode == 2 and "BYOK_ENCRYPTION_KEY" in no_key.stderr
    assert await db_pool.fetchval(
        "SELECT count(*) FROM k8s_clusters c JOIN organizations o ON o.id = c.organization_id "
        "WHERE o.slug = $1", slug) == 0


async def test_register_reads_a_kubeconfig_from_standard_input(
    database_url: str, db_pool: asyncpg.Pool, sim: KubeSim
) -> None:
    slug = f"cli-{uuid.uuid4().hex[:6]}"
    async with db_pool.acquire() as conn:
        await make_org(conn, slug)
    result = await asyncio.to_thread(
        fleetgraph, "cluster", "register", "--org", slug, "--name", "piped", "--provider",
        "vanilla", "--kubeconfig", "-", stdin=yaml.safe_dump(sim.kubeconfig),
        DATABASE_URL=database_url, BYOK_ENCRYPTION_KEY=generate_key(),
        FLEETGRAPH_ALLOW_LOCAL_CLUSTERS="true")
    assert result.returncode == 0, result.stderr
    assert await db_pool.fetchval(
        "SELECT provider FROM k8s_clusters c JOIN organizations o ON o.id = c.organization_id "
        "WHERE o.slug = $1 AND c.name = 'piped'", slug) == "vanilla"


def test_version_and_help() -> None:
    version = fleetgraph("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"fleetgraph {package_version()}"
    helped = fleetgraph("cluster", "register", "--help")
    assert helped.returncode == 0 and "--kubeconfig FILE" in helped.stdout


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                found.extend(_parsers(child))
    return found


def test_every_option_and_command_has_help_text() -> None:
    for parser in _parsers(build_parser()):
        assert parser.description, parser.prog
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                assert all(choice.help for choice in action._choices_actions), parser.prog
            else:
                assert action.help, f"{parser.prog} {action.option_strings or action.dest}"
