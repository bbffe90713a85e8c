"""Fixtures for the graph tests: a fresh organization per test (so hand-made rows of one test
never show up in another's answers) on the session's live API server."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.api import Tenant, make_tenant


@pytest.fixture
async def tenant(api: Any) -> Tenant:
    return await make_tenant(api.pool, f"g-{uuid.uuid4().hex[:10]}")


@pytest.fixture
async def other(api: Any) -> Tenant:
    return await make_tenant(api.pool, f"o-{uuid.uuid4().hex[:10]}")
