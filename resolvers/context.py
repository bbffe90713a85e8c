"""What every resolver receives as ``info.context``: the caller, the database, the vault."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import asyncpg

from app.auth import Principal, Role
from app.settings import Settings
from app.vault import Vault
from resolvers.errors import Forbidden, Unauthenticated
from resolvers.statements import CountingPool, StatementCounter


@dataclass
class Context:
    pool: asyncpg.Pool
    settings: Settings
    vault: Vault
    cursor_key: bytes
    principal: Principal | None = None
    request: Any = None
    response: Any = None
    connection_params: dict[str, Any] | None = None
    loaders: dict[str, Any] = field(default_factory=dict)
    services: dict[str, Any] = field(default_factory=dict)
    statements: StatementCounter = field(default_factory=StatementCounter)

    def __post_init__(self) -> None:
        # Every statement a resolver sends is counted per request (see resolvers.statements);
        # the wrapper speaks the pool's API, hence the cast.
        if not isinstance(self.pool, CountingPool):
            self.pool = cast(asyncpg.Pool, CountingPool(self.pool, self.statements))

    def require(self, role: Role = Role.VIEWER) -> Principal:
        """The caller, if it holds at least ``role``; raises otherwise."""
        if self.principal is None:
            raise Unauthenticated("authentication required: send Authorization: Bearer <token>")
        if not self.principal.role.allows(role):
            raise Forbidden(f"this operation needs the {role.value} role")
        return self.principal

    def loader(self, name: str, factory: Any) -> Any:
        """A per-request dataloader, created on first use (so batches never cross requests)."""
        found = self.loaders.get(name)
        if found is None:
            found = self.loaders[name] = factory(self)
        return found
