"""The issue's scenario (see ``scenario.py`` for every figure worked out): allocation, idle,
sharing, grouping, label override, daily rollup and idempotent recompute, to the cent.

The scenario is placed by each of tests/clock.py's instants (H is 10:00 the day before), so
the figures hold whatever day the suite runs on, and the cluster's month-to-date is checked
on the 1st of a month, when yesterday belongs to the previous month. The namespace-cost view
reads the server's own ``now()``, so its test places the scenario by that clock instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest

from cost.allocation import compute_hour
from cost.query import CostRow, GroupBy, ShareMode, query_costs
from tests.clock import FIRST_OF_MONTH, INSTANTS, LAST_OF_MONTH, MID_MONTH, NEW_YEARS_EVE
from tests.cost.helpers import one_node_cluster
from tests.cost.scenario import BOOK, Scenario, build_scenario, yesterday_10

D = Decimal
HOUR = timedelta(hours=1)


@pytest.fixture(scope="module", params=list(INSTANTS.values()), ids=list(INSTANTS))
async def scenario(
    db_pool: asyncpg.Pool, request: pytest.FixtureRequest
) -> AsyncIterator[Scenario]:
    """The scenario placed by one instant, H and H+1 computed at that instant."""
    instant: datetime = request.param
    async with db_pool.acquire() as conn:
        s = await build_scenario(conn, now=instant)
        for hour in (s.hour, s.hour + HOUR):
            await compute_hour(conn, cluster_id=s.cluster, hour=hour, book=BOOK, now=instant)
    yield s


async def _costs(pool: asyncpg.Pool, s: Scenario, **options: object) -> list[CostRow]:
    options.setdefault("group_by", [GroupBy.NAMESPACE])
    async with pool.acquire() as conn:
        return await query_costs(
            conn, organization_id=s.org, start=s.hour, end=s.hour + HOUR, **options  # type: ignore[arg-type]
        )


def _totals(rows: list[CostRow], key: str) -> dict[object, Decimal]:
    return {getattr(r, key) if not r.is_idle else "__idle__": r.total_cost for r in rows}


async def test_namespace_costs_and_idle_row(db_pool: asyncpg.Pool, scenario: Scenario) -> None:
    rows = await _costs(db_pool, scenario)
    assert _totals(rows, "namespace") == {
        "shop": D("3.15"), "search": D("1.40"), "kube-system": D("0.65"), "__idle__": D("3.00")
    }
    shop = next(r for r in rows if r.namespace == "shop")
    # web-1 + web-2 + batch-1: cpu 1 + 1 + 0.5; memory 0.20 + 0.15 + 0.10; web-1's disk and tx.
    assert (shop.cpu_cost, shop.memory_cost, shop.storage_cost, shop.network_cost) == (
        D("2.5"), D("0.45"), D("0.10"), D("0.10")
    )
    # core-hours: 1 + 2 x 0.5 (usage above request) + 1 x 0.5 = 2.5
    assert shop.cpu_core_hours == D("2.5")
    idle = next(r for r in rows if r.is_idle)
    # node cpu 6.00 - 4.00 allocated; node memory 2.00 - 1.00; idle core-hours 8 - 4.
    assert (idle.cpu_cost, idle.memory_cost, idle.idle_cost) == (D("2"), D("1"), D("3"))
    assert idle.cpu_core_hours == D("4")


async def test_ledger_reconciles_node_cost(db_pool: asyncpg.Pool, scenario: Scenario) -> None:
    async with db_pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT * FROM k8s_cost_hours WHERE cluster_id = $1 AND period_start = $2",
            scenario.cluster, scenario.hour,
        )
    assert row is not None
    # node 8.00 = allocated cpu+memory 5.00 + idle 3.00; total adds storage/network 0.20.
    assert (row["node_cost"], row["allocated_cost"], row["idle_cost"], row["total_cost"]) == (
        D("8"), D("5.2"), D("3"), D("8.2")
    )
    assert (row["pod_count"], row["sample_count"]) == (5, 7)
    assert row["price_cpu_core_hour"] == D("1")


async def test_team_and_cost_center_with_pod_label_override(
    db_pool: asyncpg.Pool, scenario: Scenario
) -> None:
    # batch-1 sits in shop (alpha, cc-100) but its own labels say beta / cc-300.
    teams = _totals(await _costs(db_pool, scenario, group_by=[GroupBy.TEAM]), "team")
    assert teams == {"alpha": D("2.55"), "beta": D("2.65"), "__idle__": D("3.00")}
    centers = _totals(
        await _costs(db_pool, scenario, group_by=[GroupBy.COST_CENTER]), "cost_center"
    )
    assert centers == {
        "cc-100": D("2.55"), "cc-200": D("2.05"), "cc-300": D("0.60"), "__idle__": D("3.00")
    }


async def test_deployment_and_cluster_grouping(db_pool: asyncpg.Pool, scenario: Scenario) -> None:
    rows = await _costs(db_pool, scenario, group_by=[GroupBy.DEPLOYMENT])
    by = {(r.namespace, r.deployment): r.total_cost for r in rows if not r.is_idle}
    assert by == {
        ("shop", "web"): D("2.55"), ("shop", ""): D("0.60"),
        ("search", "api"): D("1.40"), ("kube-system", "coredns"): D("0.65"),
    }
    [allocated, idle] = await _costs(db_pool, scenario, group_by=[GroupBy.CLUSTER])
    assert (allocated.cluster_id, allocated.total_cost, idle.total_cost) == (
        scenario.cluster, D("5.2"), D("3")
    )


async def test_shared_idle_goes_per_resource_in_proportion_to_cost(
    db_pool: asyncpg.Pool, scenario: Scenario
) -> None:
    # idle cpu 2.00 by cpu cost 2.5 : 1 : 0.5 of 4 -> 1.25, 0.50, 0.25
    # idle memory 1.00 by memory cost 0.45 : 0.40 : 0.15 of 1 -> 0.45, 0.40, 0.15
    rows = await _costs(db_pool, scenario, share_idle=True)
    assert _totals(rows, "namespace") == {
        "shop": D("4.85"), "search": D("2.30"), "kube-system": D("1.05")
    }
    assert {r.namespace: r.idle_cost for r in rows} == {
        "shop": D("1.70"), "search": D("0.90"), "kube-system": D("0.40")
    }
    assert sum(r.total_cost for r in rows) == D("8.20")


async def test_shared_namespace_split_even_and_weighted(
    db_pool: asyncpg.Pool, scenario: Scenario
) -> None:
    # even: kube-system's 0.65 in two equal parts, 0.325 each.
    even = await _costs(
        db_pool, scenario, shared_namespaces=["kube-system"], share_mode=ShareMode.EVEN
    )
    assert _totals(even, "namespace") == {
        "shop": D("3.475"), "search": D("1.725"), "__idle__": D("3.00")
    }
    # weighted by cost: 0.65 x 3.15/4.55 = 0.45 to shop, 0.65 x 1.40/4.55 = 0.20 to search.
    weighted = await _costs(
        db_pool, scenario, shared_namespaces=["kube-system"], share_mode=ShareMode.WEIGHTED
    )
    assert _totals(weighted, "namespace") == {
        "shop": D("3.60"), "search": D("1.60"), "__idle__": D("3.00")
    }
    assert {r.namespace: r.shared_cost for r in weighted if not r.is_idle} == {
        "shop": D("0.45"), "search": D("0.20")
    }
    # both: kube-system with its idle share (1.05) split evenly, on top of shared idle.
    both = await _costs(
        db_pool, scenario, shared_namespaces=["kube-system"], share_mode=ShareMode.EVEN,
        share_idle=True,
    )
    assert _totals(both, "namespace") == {"shop": D("5.375"), "search": D("2.825")}


async def test_even_sharing_gives_each_row_of_the_grouping_an_equal_part(
    db_pool: asyncpg.Pool, scenario: Scenario
) -> None:
    # Grouped by team, kube-system's 0.65 goes to the teams that receive: alpha (shop's web,
    # 2.55) and beta (search's api 1.40 and shop's batch-1 0.60, by its label), 0.325 each:
    # alpha 2.55 + 0.325 = 2.875; beta 2.65 - 0.65 (kube-system itself) + 0.325 = 2.325.
    # (Split per receiving namespace, shop's half would have been cut by cost between alpha
    # and beta: alpha 2.813095, beta 2.386905.)
    rows = await _costs(db_pool, scenario, group_by=[GroupBy.TEAM],
                        shared_namespaces=["kube-system"], share_mode=ShareMode.EVEN)
    assert _totals(rows, "team") == {"alpha": D("2.875"), "beta": D("2.325"), "__idle__": D("3")}
    assert {r.team: r.shared_cost for r in rows if not r.is_idle} == {
        "alpha": D("0.325"), "beta": D("0.325")}


async def test_idle_of_a_resource_nothing_allocated_stays_an_idle_row(
    db_pool: asyncpg.Pool,
) -> None:
    """A node of 2 cores and 4 GiB (cpu 2.00 + memory 0.40 an hour); its one pod requests a
    core and no memory. Asked to share idle, CPU idle (1.00) goes to the pod's namespace by
    CPU cost; memory idle (0.40) has nothing to go by and stays the idle row's."""
    hour = yesterday_10(MID_MONTH)
    async with db_pool.acquire() as conn:
        org, cluster = await one_node_cluster(conn, created_at=hour - timedelta(days=1),
                                              cores=2, memory_gib=4)
        await conn.execute(
            """INSERT INTO k8s_pods (cluster_id, uid, namespace, name, node_name, phase,
                   requests_cpu_cores, requests_memory_bytes, created_at)
               VALUES ($1, 'p', 'app', 'p', 'n', 'Running', 1, 0, $2)""",
            cluster, hour - timedelta(days=1),
        )
        await compute_hour(conn, cluster_id=cluster, hour=hour, book=BOOK, now=MID_MONTH)
        rows = await query_costs(conn, organization_id=org, start=hour, end=hour + HOUR,
                                 group_by=[GroupBy.NAMESPACE], share_idle=True)
    app, idle = rows
    # app: its own cpu 1.00 + all of the CPU idle 1.00 = 2.00.
    assert (app.namespace, app.cpu_cost, app.idle_cost, app.total_cost) == (
        "app", D("1"), D("1"), D("2"))
    # The idle row keeps memory only: 4 GiB-hours, 0.40. (Spread by total cost instead, the
    # memory idle would have gone to app too.)
    assert (idle.is_idle, idle.cpu_cost, idle.memory_cost, idle.total_cost) == (
        True, D("0"), D("0.4"), D("0.4"))
    assert (idle.cpu_core_hours, idle.memory_gib_hours) == (D("0"), D("4"))


async def test_shared_namespace_marks_are_used_by_default_and_scoped_to_org(
    db_pool: asyncpg.Pool, scenario: Scenario
) -> None:
    async with db_pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO k8s_shared_namespaces (organization_id, namespace) VALUES ($1, $2)",
            scenario.org, "kube-system",
        )
        try:
            rows = await _costs(db_pool, scenario, share_mode=ShareMode.WEIGHTED)
            assert _totals(rows, "namespace")["shop"] == D("3.60")
            # an explicit empty list overrides the marks
            plain = await _costs(db_pool, scenario, shared_namespaces=[])
            assert _totals(plain, "namespace")["kube-system"] == D("0.65")
        finally:
            await conn.execute(
                "DELETE FROM k8s_shared_namespaces WHERE organization_id = $1", scenario.org
            )
        stranger = await conn.fetchval("SELECT gen_random_uuid()")
        assert await query_costs(
            conn, organization_id=stranger, start=scenario.hour, end=scenario.hour + HOUR,
            group_by=[GroupBy.NAMESPACE], cluster_ids=[scenario.cluster],
        ) == []


async def test_daily_rollup_equals_sum_of_hours(db_pool: asyncpg.Pool, scenario: Scenario) -> None:
    async with db_pool.acquire() as conn:
        for table in ("k8s_cost_allocations", "k8s_cost_attribution"):
            mismatches = await conn.fetch(
                f"""SELECT d.namespace, d.team, d.total_cost, h.total
                      FROM {table} d
                      JOIN (SELECT namespace, team, sum(total_cost) AS total, sum(cpu_cost) AS c
                              FROM {table} WHERE cluster_id = $1 AND granularity = 'hour'
                             GROUP BY namespace, team) h
                        ON h.namespace = d.namespace AND h.team IS NOT DISTINCT FROM d.team
                     WHERE d.cluster_id = $1 AND d.granularity = 'day'
                       AND (d.total_cost <> h.total OR d.cpu_cost <> h.c)""",
                scenario.cluster,
            )
            assert mismatches == []
        day = await conn.fetch(
            """SELECT namespace, sum(total_cost) AS total FROM k8s_cost_attribution
                WHERE cluster_id = $1 AND granularity = 'day' GROUP BY namespace""",
            scenario.cluster,
        )
        # H + H+1: shop 3.15 + 2.40, search 1.40 x 2, kube-system 0.65 x 2, idle 3.00 + 3.55
        assert {r["namespace"]: r["total"] for r in day} == {
            "shop": D("5.55"), "search": D("2.80"), "kube-system": D("1.30"),
            "__idle__": D("6.55"),
        }
        # A query over the whole day reads the day rows; it equals the two hours.
        day_start = scenario.hour.replace(hour=0)
        whole_day = await query_costs(
            conn, organization_id=scenario.org, start=day_start,
            end=day_start + timedelta(days=1), group_by=[GroupBy.NAMESPACE],
        )
        assert _totals(whole_day, "namespace")["shop"] == D("5.55")


# The cluster row after H and H+1 at each instant: month-to-date sums the clock's own UTC
# month only (8.20 + 8.00), and on the 1st "yesterday" is last month.
MONTH_TO_DATE_AT: dict[datetime, Decimal] = {
    FIRST_OF_MONTH: D("0"), MID_MONTH: D("16.20"), LAST_OF_MONTH: D("16.20"),
    NEW_YEARS_EVE: D("16.20"),
}


async def test_cluster_month_to_date_counts_the_clocks_month_only(
    db_pool: asyncpg.Pool, scenario: Scenario
) -> None:
    row = await db_pool.fetchrow(
        "SELECT cost_last_hour, cost_month_to_date FROM k8s_clusters WHERE id = $1",
        scenario.cluster,
    )
    assert row is not None
    assert (row["cost_last_hour"], row["cost_month_to_date"]) == (
        D("8.00"), MONTH_TO_DATE_AT[scenario.now]
    )


async def test_namespace_costs_view_sums_the_daily_rollups_of_the_servers_last_30_days(
    db_pool: asyncpg.Pool,
) -> None:
    """``v_k8s_namespace_costs`` windows by the server's ``now()``, which is fixed for a
    transaction: the scenario is placed by it and read back inside one, then rolled back."""
    async with db_pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            server_now: datetime = await conn.fetchval("SELECT now()")
            s = await build_scenario(conn, now=server_now)
            for hour in (s.hour, s.hour + HOUR):
                await compute_hour(conn, cluster_id=s.cluster, hour=hour, book=BOOK,
                                   now=server_now)
            view = await conn.fetch(
                """SELECT namespace, total_cost_30d, days_with_cost FROM v_k8s_namespace_costs
                    WHERE cluster_id = $1""",
                s.cluster,
            )
        finally:
            await tx.rollback()
    # H + H+1, idle excluded: shop 3.15 + 2.40, search 1.40 x 2, kube-system 0.65 x 2.
    assert {r["namespace"]: (r["total_cost_30d"], r["days_with_cost"]) for r in view} == {
        "shop": (D("5.55"), 1), "search": (D("2.80"), 1), "kube-system": (D("1.30"), 1)
    }


async def test_recompute_replaces_the_hour_exactly(
    db_pool: asyncpg.Pool, scenario: Scenario
) -> None:
    columns = """granularity, period_start, namespace, team, cost_center, is_idle, cpu_cost,
                 memory_cost, storage_cost, network_cost, total_cost, cpu_core_hours,
                 memory_gib_hours, storage_gib_hours, network_gib"""
    queries = [
        f"SELECT deployment, pod_count, {columns} FROM k8s_cost_allocations"
        " WHERE cluster_id = $1 ORDER BY 3, 4, 5, 1, 6, 7",
        f"SELECT {columns} FROM k8s_cost_attribution WHERE cluster_id = $1 ORDER BY 1, 2, 3, 4, 5",
    ]
    async with db_pool.acquire() as conn:
        before = [await conn.fetch(q, scenario.cluster) for q in queries]
        for _ in range(2):
            # Twenty minutes later (still the clock's month): the same rows.
            await compute_hour(conn, cluster_id=scenario.cluster, hour=scenario.hour, book=BOOK,
                               now=scenario.now + timedelta(minutes=20))
        after = [await conn.fetch(q, scenario.cluster) for q in queries]
    assert [list(map(tuple, b)) for b in before] == [list(map(tuple, a)) for a in after]
    assert len(before[0]) == 5 + 4 + 5  # H: 4 groups + idle; H+1: batch-1 gone; the day: 5
