"""API tokens and the principal a request acts as.

A token is shown once, at creation; only its SHA-256 is stored, so a database dump holds
nothing that authenticates. Tokens are long random strings, so a plain hash (not a slow KDF)
is enough: there is nothing to brute-force.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum

import asyncpg

TOKEN_PREFIX = "fgt_"


class Role(StrEnum):
    """What a token may do. Each role can do everything the ones before it can."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


_RANKS = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


@dataclass(frozen=True)
class Principal:
    """The organization and role a request acts for. Every read and write is scoped by it."""

    organization_id: uuid.UUID
    organization_slug: str
    role: Role
    token_id: uuid.UUID


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def bearer_token(header: str | None) -> str | None:
    """The token in an ``Authorization: Bearer <token>`` value, or None."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


# One statement: look the token up and, at most once a minute, record that it was used.
_AUTHENTICATE = """
WITH tok AS (
    SELECT t.id, t.role, t.organization_id, o.slug, t.last_used_at
      FROM api_tokens t JOIN organizations o ON o.id = t.organization_id
     WHERE t.token_hash = $1 AND t.revoked_at IS NULL
), touched AS (
    UPDATE api_tokens SET last_used_at = now()
     WHERE id IN (SELECT id FROM tok
                   WHERE last_used_at IS NULL OR last_used_at < now() - interval '60 seconds')
)
SELECT id, role, organization_id, slug FROM tok
"""


async def authenticate(pool: asyncpg.Pool, token: str | None) -> Principal | None:
    """The principal for a token, or None when it is missing, unknown or revoked."""
    if not token or len(token) > 200:
        return None
    row = await pool.fetchrow(_AUTHENTICATE, hash_token(token))
    if row is None:
        return None
    return Principal(
        organization_id=row["organization_id"],
        organization_slug=row["slug"],
        role=Role(row["role"]),
        token_id=row["id"],
    )


# HTTP requests reuse a successful lookup for this long: a dashboard's requests then cost no
# token statement (and no pool round trip) each. A revoked token keeps working at most this
# long on this replica, within the 5 s in which revocation reaches open WebSockets too.
RECENT_TOKEN_SECONDS = 2.0
_RECENT_LIMIT = 1024
_recent: dict[tuple[int, bytes], tuple[float, Principal]] = {}


async def authenticate_recent(pool: asyncpg.Pool, token: str | None) -> Principal | None:
    """``authenticate``, reusing a success from the last ``RECENT_TOKEN_SECONDS``. Failures
    are never reused (an unknown token costs its statement every time, and fills nothing)."""
    if not token or len(token) > 200:
        return None
    key, now = (id(pool), hash_token(token)), time.monotonic()
    found = _recent.get(key)
    if found is not None and now - found[0] < RECENT_TOKEN_SECONDS:
        return found[1]
    principal = await authenticate(pool, token)
    _recent.pop(key, None)
    if principal is not None:
        if len(_recent) >= _RECENT_LIMIT:
            del _recent[next(iter(_recent))]  # the oldest
        _recent[key] = (now, principal)
    return principal
