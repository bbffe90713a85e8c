"""Provider defaults, the on-prem sheet, and price changes: from the hour they take effect on,
never rewriting hours already priced. Tests that place hours do so by each of tests/clock.py's
instants ("yesterday" is the day before the instant), never by today's date."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg

from cost.allocation import compute_hour
from cost.pricing import (
    OPENCOST_DEFAULT,
    PROVIDERS,
    PriceBook,
    effective_prices,
    get_cluster_pricing,
    set_cluster_pricing,
)
from cost.query import GroupBy, query_costs
from cost.rollup import floor_day
from tests.clock import at_each_instant
from tests.cost.helpers import BOOK, one_node_cluster
from tests.cost.scenario import yesterday_10
from tests.factories import make_cluster, make_org

D = Decimal
HOUR = timedelta(hours=1)


def test_every_provider_has_a_default_and_onprem_reads_opencost_sheets(tmp_path: Path) -> None:
    book = PriceBook.from_env({})
    assert {p for p in PROVIDERS if book.default_for(p).cpu_core_hour > 0} == set(PROVIDERS)
    assert book.default_for("vanilla") == OPENCOST_DEFAULT
    assert OPENCOST_DEFAULT.cpu_core_hour == D("0.031611")
    sheet = tmp_path / "prices.json"
    sheet.write_text(json.dumps({"CPU": "0.02", "RAM": "0.003", "storage": "0.0001"}))
    from_file = PriceBook.from_env({"FLEETGRAPH_ONPREM_PRICING": str(sheet)})
    assert from_file.default_for("k3s").cpu_core_hour == D("0.02")
    assert from_file.default_for("k3s").network_gib == OPENCOST_DEFAULT.network_gib
    assert from_file.default_for("eks") == book.default_for("eks")
    inline = PriceBook.from_env({"FLEETGRAPH_ONPREM_PRICING": '{"cpu_core_hour": 0.5}'})
    assert inline.default_for("vanilla").cpu_core_hour == D("0.5")


@at_each_instant
async def test_cluster_columns_fill_in_over_provider_default(
    db_pool: asyncpg.Pool, instant: datetime
) -> None:
    async with db_pool.acquire() as conn:
        org = await make_org(conn)
        cluster = await make_cluster(conn, org, provider="gke", price_cpu_core_hour=D("0.05"))
        sheet = await effective_prices(conn, cluster_id=cluster, at=yesterday_10(instant),
                                       book=BOOK)
    assert sheet is not None
    assert sheet.cpu_core_hour == D("0.05")
    assert sheet.memory_gib_hour == BOOK.default_for("gke").memory_gib_hour


@at_each_instant
async def test_price_change_mid_day_applies_from_its_hour_and_keeps_past_hours(
    db_pool: asyncpg.Pool, instant: datetime
) -> None:
    day = floor_day(yesterday_10(instant))
    async with db_pool.acquire() as conn:
        # One 1-core node: every hour costs exactly the CPU price (all idle).
        org, cluster = await one_node_cluster(conn, created_at=day - timedelta(days=1))
        for hour in (13, 14, 15, 16):
            at = day + hour * HOUR
            if hour == 14:  # 2.00 from 14:00 sharp
                await set_cluster_pricing(conn, organization_id=org, cluster_id=cluster,
                                          effective_from=at, book=BOOK, cpu_core_hour=D("2.00"))
            if hour == 16:  # 3.00 set at 15:30: the 15:00 hour keeps 2.00, 16:00 pays 3.00
                await set_cluster_pricing(conn, organization_id=org, cluster_id=cluster,
                                          effective_from=at - 30 * timedelta(minutes=1),
                                          book=BOOK, cpu_core_hour=D("3.00"))
            await compute_hour(conn, cluster_id=cluster, hour=at, book=BOOK, now=at + HOUR)
        # Recomputing 13:00 after both changes still uses the 1.00 of its time.
        await compute_hour(conn, cluster_id=cluster, hour=day + 13 * HOUR, book=BOOK,
                           now=day + 20 * HOUR)
        hours = await conn.fetch(
            """SELECT extract(hour FROM period_start)::int AS h, total_cost, price_cpu_core_hour
                 FROM k8s_cost_hours WHERE cluster_id = $1 ORDER BY 1""", cluster,
        )
        assert [(r["h"], r["total_cost"]) for r in hours] == [
            (13, D("1")), (14, D("2")), (15, D("2")), (16, D("3"))
        ]
        # 1 + 2 + 2 + 3 = 8.00 for the day
        [row] = await query_costs(conn, organization_id=org, start=day,
                                  end=day + timedelta(days=1), group_by=[GroupBy.CLUSTER])
        assert row.total_cost == D("8")
        pricing = await get_cluster_pricing(conn, organization_id=org, cluster_id=cluster,
                                            at=day + 17 * HOUR, book=BOOK)
        assert pricing is not None and pricing.sheet.cpu_core_hour == D("3")
        assert await conn.fetchval(
            "SELECT price_cpu_core_hour FROM k8s_clusters WHERE id = $1", cluster
        ) == D("3")
        stranger = await make_org(conn)
        assert await get_cluster_pricing(conn, organization_id=stranger, cluster_id=cluster,
                                         at=day, book=BOOK) is None
