"""A window holds the hours that *start* in ``[from, to)``, as the schema says (issue 14): a
window from 10:30 leaves the 10:00 hour out, one ending at 13:30 takes the 13:00 hour in.

Worked by hand on a cluster whose node costs 1.00 every hour (``one_node_cluster``), with a
0.5-core pod only in the first hour of day D and a 0.25-core pod only in the first hour of
day D + 2; D is three days before each of tests/clock.py's instants, so the whole-day rows the
query reads cross a month's or a year's end at some instants.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import asyncpg

from cost.allocation import compute_hour
from cost.query import GroupBy, WindowPreset, query_costs, window_bounds
from cost.rollup import floor_day
from tests.clock import at_each_instant
from tests.cost.helpers import BOOK, one_node_cluster

D = Decimal
HOUR = timedelta(hours=1)
M = timedelta(minutes=1)


@at_each_instant
async def test_windows_take_the_hours_that_start_inside_them(
    db_pool: asyncpg.Pool, instant: datetime
) -> None:
    day = floor_day(instant) - timedelta(days=3)
    async with db_pool.acquire() as conn:
        org, cluster = await one_node_cluster(conn, created_at=day - timedelta(days=1))
        for uid, cpu, start in (("early", "0.5", day), ("late", "0.25", day + 48 * HOUR)):
            await conn.execute(
                """INSERT INTO k8s_pods (cluster_id, uid, namespace, name, node_name, phase,
                       requests_cpu_cores, created_at, start_time, deleted_at)
                   VALUES ($1, $2, 'app', $2, 'n', 'Running', $3, $4, $4, $5)""",
                cluster, uid, D(cpu), start, start + HOUR,
            )
        for k in range(49):  # D 00:00 to D+2 00:00
            await compute_hour(conn, cluster_id=cluster, hour=day + k * HOUR, book=BOOK,
                               now=instant)

        async def totals(start: datetime, end: datetime) -> dict[str, Decimal]:
            rows = await query_costs(conn, organization_id=org, start=start, end=end,
                                     group_by=[GroupBy.NAMESPACE])
            return {"__idle__" if r.is_idle else str(r.namespace): r.total_cost for r in rows}

        # [D 00:30, D+2 00:30): the hours D 01:00 ... D+2 00:00, 48 of them (D+1 read from its
        # day row). "early" ran at D 00:00, outside; "late" at D+2 00:00, inside:
        # app 0.25, idle 48 x 1.00 - 0.25 = 47.75. (Flooring both bounds would read
        # D 00:00 ... D+1 23:00: app 0.50, idle 47.50.)
        assert await totals(day + 30 * M, day + 48 * HOUR + 30 * M) == {
            "app": D("0.25"), "__idle__": D("47.75")}
        # A window from a whole hour keeps it: [D 00:00, D 00:30) is the hour D 00:00:
        # app 0.50, idle 0.50.
        assert await totals(day, day + 30 * M) == {"app": D("0.5"), "__idle__": D("0.5")}
        # A window ending one minute after D+2 00:00 takes that hour in: 0.25 + 0.75 idle.
        assert await totals(day + 48 * HOUR, day + 48 * HOUR + M) == {
            "app": D("0.25"), "__idle__": D("0.75")}
        # Inside one hour, no hour starts: nothing.
        assert await totals(day + 10 * M, day + 50 * M) == {}


@at_each_instant
def test_presets_end_with_the_running_hour(instant: datetime) -> None:
    """Presets are whole hours; those ending now include the running (provisional) hour."""
    running = instant.replace(minute=0, second=0, microsecond=0)
    assert window_bounds(WindowPreset.LAST_24_HOURS, instant) == (
        running - 23 * HOUR, running + HOUR)
    assert window_bounds(WindowPreset.TODAY, instant) == (floor_day(instant), running + HOUR)
    assert window_bounds(WindowPreset.YESTERDAY, instant) == (
        floor_day(instant) - timedelta(days=1), floor_day(instant))
