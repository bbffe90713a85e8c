"""The ``fleetgraph`` command line as an operator runs it: real processes, real database."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg

from app.credentials import open_kubeconfig, seal_kubeconfig
from app.db import create_pool
from app.kubeconfig import sanitize_kubeconfig
from app.vault import Vault, generate_key
from tests.factories import make_cluster, make_org
from tests.graphql.registry_helpers import kubeconfig

FLEETGRAPH = str(Path(sys.executable).with_name("fleetgraph"))


def run(*args: str, database_url: str, keys: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "BYOK_ENCRYPTION_KEY"}
    env["DATABASE_URL"] = database_url
    if keys is not None:
        env["BYOK_ENCRYPTION_KEY"] = keys
    return subprocess.run([FLEETGRAPH, *args], env=env, capture_output=True, text=True,
                          timeout=60, check=False)


async def test_org_and_token_commands(database_url: str, db_pool: asyncpg.Pool) -> None:
    slug = f"cli-{uuid.uuid4().hex[:6]}"
    created = run("org", "create", slug, "--name", "CLI Org", database_url=database_url)
    assert created.returncode == 0, created.stderr
    again = run("org", "create", slug, database_url=database_url)
    assert again.returncode == 2 and "already exists" in again.stderr
    issued = run("token", "create", "--org", slug, "--role", "operator", "--name", "ci",
                 database_url=database_url)
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip()
    assert token.startswith("fgt_") and len(token) > 40
    row = await db_pool.fetchrow(
        "SELECT t.id, t.role, t.name, t.token_hash FROM api_tokens t JOIN organizations o "
        "ON o.id = t.organization_id WHERE o.slug = $1", slug)
    assert (row["role"], row["name"]) == ("operator", "ci")
    assert token.encode() not in row["token_hash"] and len(row["token_hash"]) == 32
    bad_role = run("token", "create", "--org", slug, "--role", "root", database_url=database_url)
    assert bad_role.returncode == 2
    revoked = run("token", "revoke", str(row["id"]), database_url=database_url)
    assert revoked.returncode == 0, revoked.stderr
    assert await db_pool.fetchval(
        "SELECT revoked_at IS NOT NULL FROM api_tokens WHERE id = $1", row["id"])


async def test_vault_rotate_reencrypts_with_the_first_key(isolated_database_url: str) -> None:
    database_url = isolated_database_url
    db_pool = await create_pool(database_url, max_size=2)
    old_key, new_key = generate_key(), generate_key()
    old, both = Vault.from_env(old_key), Vault.from_env(f"{new_key},{old_key}")
    kc = sanitize_kubeconfig(kubeconfig(token="rotate-me"))
    async with db_pool.acquire() as conn:
        org = await make_org(conn)
        cluster_id = uuid.uuid4()
        sealed = seal_kubeconfig(old, cluster_id, kc)
        await make_cluster(conn, org, id=cluster_id, kubeconfig_encrypted=sealed.ciphertext,
                           kubeconfig_key_id=sealed.key_id)
    missing = run("vault", "rotate", database_url=database_url, keys="")
    assert missing.returncode == 2 and "fleetgraph vault generate-key" in missing.stderr
    result = run("vault", "rotate", database_url=database_url, keys=f"{new_key},{old_key}")
    assert result.returncode == 0, result.stderr
    row = await db_pool.fetchrow(
        "SELECT kubeconfig_encrypted, kubeconfig_key_id FROM k8s_clusters WHERE id = $1",
        cluster_id)
    assert row["kubeconfig_key_id"] == both.primary_key_id != old.primary_key_id
    assert open_kubeconfig(Vault.from_env(new_key), cluster_id, row["kubeconfig_encrypted"],
                           row["kubeconfig_key_id"]).token == "rotate-me"
    assert new_key not in result.stdout + result.stderr
    await db_pool.close()


def test_generate_key_and_schema_commands(tmp_path: Path) -> None:
    key = run("vault", "generate-key", database_url="postgresql://unused/")
    assert key.returncode == 0 and Vault.from_env(key.stdout.strip()).primary_key_id
    schema = run("schema", database_url="postgresql://unused/")
    assert schema.returncode == 0
    committed = (Path(__file__).resolve().parents[2] / "schema.graphql").read_text()
    assert schema.stdout == committed, "schema.graphql is stale: run `fleetgraph schema`"


def test_serve_refuses_to_start_without_a_key(tmp_path: Path) -> None:
    result = run("serve", "--port", "0", database_url="postgresql://unused/", keys="not-a-key")
    assert result.returncode == 2
    assert "BYOK_ENCRYPTION_KEY" in result.stderr and "generate-key" in result.stderr
    assert "not-a-key" not in result.stderr
