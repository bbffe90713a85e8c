"""Organizations and their API tokens: the operations behind ``fleetgraph org`` and ``token``."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

import asyncpg

from app.auth import Role, hash_token, new_token

SLUG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class TenancyError(ValueError):
    """A tenancy command was refused; the message says which argument and why."""


@dataclass(frozen=True)
class IssuedToken:
    id: uuid.UUID
    token: str
    role: Role


async def create_organization(
    conn: asyncpg.Connection, *, slug: str, name: str | None
) -> uuid.UUID:
    if not SLUG_PATTERN.match(slug):
        raise TenancyError(
            "slug: use 1-63 lowercase letters, digits or '-', starting with a letter or digit"
        )
    try:
        org_id: uuid.UUID = await conn.fetchval(
            "INSERT INTO organizations (slug, name) VALUES ($1, $2) RETURNING id",
            slug, name or slug,
        )
    except asyncpg.UniqueViolationError:
        raise TenancyError(f"slug: organization {slug!r} already exists") from None
    return org_id


async def create_token(
    conn: asyncpg.Connection, *, org_slug: str, role: str, name: str = ""
) -> IssuedToken:
    try:
        parsed_role = Role(role)
    except ValueError:
        raise TenancyError("role: must be one of viewer, operator, admin") from None
    org_id = await conn.fetchval("SELECT id FROM organizations WHERE slug = $1", org_slug)
    if org_id is None:
        raise TenancyError(f"org: no organization with slug {org_slug!r}")
    token = new_token()
    token_id: uuid.UUID = await conn.fetchval(
        """INSERT INTO api_tokens (organization_id, name, token_hash, token_prefix, role)
           VALUES ($1, $2, $3, $4, $5) RETURNING id""",
        org_id, name, hash_token(token), token[:8], parsed_role.value,
    )
    return IssuedToken(id=token_id, token=token, role=parsed_role)


async def revoke_token(conn: asyncpg.Connection, *, token_id: str) -> None:
    try:
        parsed = uuid.UUID(token_id)
    except ValueError:
        raise TenancyError("id: not a token id (expected a UUID)") from None
    status = await conn.execute(
        "UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", parsed
    )
    if status == "UPDATE 0":
        raise TenancyError(f"id: no active token {token_id}")
