"""The issue's scenario, by hand: one cluster, two nodes, three namespaces, two teams.

Prices (set through ``set_cluster_pricing``): CPU 1.00 /core-hour, memory 0.10 /GiB-hour,
storage 0.01 /GiB-hour, network 0.05 /GiB. ``H`` is 10:00 UTC on the day before the test's
clock (``now``, one of tests/clock.py's instants), so it never depends on the day a test runs.

Nodes (both whole hour):
  node-1  4 cores, 16 GiB, no price of its own -> 4 x 1.00 + 16 x 0.10 = 5.60 (cpu 4.00, mem 1.60)
  node-2  4 cores,  8 GiB, instance type ``idle.large`` priced 2.40 /h, runs no pod (the idle
          node); split by the list ratio 4.00 : 0.80 -> cpu 2.00, mem 0.40
  node cost 8.00 = cpu 6.00 + memory 2.00

Namespaces: shop (team alpha, cost center cc-100), search (beta, cc-200),
kube-system (beta, cc-200).

Pods in H (cost = the average over the hour's samples of max(request, usage), OpenCost's rule,
x price x fraction of the hour; no samples: the request). Every pod below is either above its
request in every sample or below it in every sample, so the figures are the same as under the
old rule, max(request, average usage):
  shop/web-1     deploy web, 1 core 2 GiB, whole hour, usage 0.5 core 1 GiB, storage 10 GiB,
                 tx counter 0 -> 2 GiB: cpu 1.00, mem 0.20, storage 0.10, network 0.10 = 1.40
  shop/web-2     deploy web, 1 core 2 GiB, starts 10:30 (half hour), samples 1.5 and 2.5 cores,
                 2.5 and 3.5 GiB (above its request): max per sample averaged = 2 cores 3 GiB:
                 cpu 2 x 0.5 = 1.00, mem 3 x 0.10 x 0.5 = 0.15 = 1.15
  shop/batch-1   no deployment, labels team=beta cost-center=cc-300 (override the namespace),
                 1 core 2 GiB, created 09:00, deleted 10:30, no samples (request):
                 cpu 0.50, mem 0.10 = 0.60
  search/api-1   deploy api, 1 core 4 GiB, whole hour, usage 0.25 core 2 GiB: cpu 1.00,
                 mem 0.40 = 1.40
  kube-system/coredns-1  deploy coredns, 0.5 core 1.5 GiB, usage 0.1 core 0.5 GiB:
                 cpu 0.50, mem 0.15 = 0.65
  shop/old-1     deleted 09:50, before H: nothing.    shop/pending-1  never bound: nothing.

  shop 3.15 (cpu 2.50, mem 0.45, storage 0.10, network 0.10), search 1.40, kube-system 0.65
  allocated cpu 4.00 + mem 1.00 (+ storage/network 0.20) = 5.20
  idle = cpu 6.00 - 4.00 = 2.00, mem 2.00 - 1.00 = 1.00 -> 3.00; cluster hour 8.20

  teams: alpha = shop - batch-1 = 2.55; beta = 1.40 + 0.65 + 0.60 = 2.65
  cost centers: cc-100 2.55, cc-200 2.05, cc-300 0.60

H+1 (11:00-12:00), no samples, batch-1 gone, everything on requests:
  web-1 1.20, web-2 1.20 (shop 2.40), api-1 1.40, coredns 0.65 -> allocated 4.45
  (cpu 3.50, mem 0.95), idle cpu 2.50 + mem 1.05 = 3.55, cluster hour 8.00
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg

from cost.pricing import PriceBook, set_cluster_pricing
from tests.factories import make_cluster, make_org

GIB = 1024**3
BOOK = PriceBook.from_env({})


@dataclass(frozen=True)
class Scenario:
    org: uuid.UUID
    cluster: uuid.UUID
    hour: datetime
    now: datetime  # the test's clock the scenario was placed by


def yesterday_10(now: datetime) -> datetime:
    """10:00 UTC on the UTC day before ``now``."""
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=1) + timedelta(hours=10)


async def build_scenario(conn: asyncpg.Connection, *, now: datetime) -> Scenario:
    """The scenario's rows with ``H = yesterday_10(now)``; nothing is computed yet."""
    h = yesterday_10(now)
    org = await make_org(conn)
    cluster = await make_cluster(conn, org, created_at=h - timedelta(days=2))
    await set_cluster_pricing(
        conn, organization_id=org, cluster_id=cluster, effective_from=h - timedelta(days=1),
        book=BOOK, cpu_core_hour=Decimal("1.00"), memory_gib_hour=Decimal("0.10"),
        storage_gib_hour=Decimal("0.01"), network_gib=Decimal("0.05"),
        instance_types={"idle.large": Decimal("2.40")},
    )
    for name, cores, memory, instance_type in [
        ("node-1", 4, 16 * GIB, "m.xlarge"),
        ("node-2", 4, 8 * GIB, "idle.large"),
    ]:
        await conn.execute(
            """INSERT INTO k8s_nodes (cluster_id, uid, name, capacity_cpu_cores,
                   capacity_memory_bytes, instance_type, ready, created_at)
               VALUES ($1, $2, $2, $3, $4, $5, true, $6)""",
            cluster, name, cores, memory, instance_type, h - timedelta(days=2),
        )
    for name, team, cost_center in [
        ("shop", "alpha", "cc-100"), ("search", "beta", "cc-200"),
        ("kube-system", "beta", "cc-200"),
    ]:
        await conn.execute(
            """INSERT INTO k8s_namespaces (cluster_id, uid, name, labels, team, cost_center,
                   created_at)
               VALUES ($1, $2, $2, $3, $4, $5, $6)""",
            cluster, name, {"team": team, "cost-center": cost_center}, team, cost_center,
            h - timedelta(days=2),
        )
    m = timedelta(minutes=1)
    pods = [
        # namespace, name, deployment, labels, cpu, memory, created, start, deleted, node
        ("shop", "web-1", "web", {}, "1", 2 * GIB, h - 60 * m, h - 59 * m, None, "node-1"),
        ("shop", "web-2", "web", {}, "1", 2 * GIB, h + 29 * m, h + 30 * m, None, "node-1"),
        ("shop", "batch-1", None, {"team": "beta", "cost-center": "cc-300"}, "1", 2 * GIB,
         h - 60 * m, None, h + 30 * m, "node-1"),
        ("search", "api-1", "api", {}, "1", 4 * GIB, h - 60 * m, h - 60 * m, None, "node-1"),
        ("kube-system", "coredns-1", "coredns", {}, "0.5", 3 * GIB // 2, h - 60 * m, None,
         None, "node-1"),
        ("shop", "old-1", "web", {}, "4", 4 * GIB, h - 90 * m, None, h - 10 * m, "node-1"),
        ("shop", "pending-1", "web", {}, "4", 4 * GIB, h - 90 * m, None, None, None),
    ]
    for ns, name, deployment, labels, cpu, memory, created, start, deleted, node in pods:
        await conn.execute(
            """INSERT INTO k8s_pods (cluster_id, uid, namespace, name, deployment_name, labels,
                   requests_cpu_cores, requests_memory_bytes, created_at, start_time,
                   deleted_at, node_name, phase)
               VALUES ($1, $2, $3, $2, $4, $5, $6, $7, $8, $9, $10, $11,
                       CASE WHEN $11::text IS NULL THEN 'Pending' ELSE 'Running' END)""",
            cluster, name, ns, deployment, labels, Decimal(cpu), memory, created, start,
            deleted, node,
        )
    samples = [
        # namespace, pod, minute into H, cpu, memory GiB, storage GiB, tx GiB
        ("shop", "web-1", -5, "5", "9", None, None),  # the hour before: ignored
        ("shop", "web-1", 10, "0.4", "0.5", 10, 0),
        ("shop", "web-1", 50, "0.6", "1.5", 10, 2),
        ("shop", "web-2", 40, "1.5", "2.5", None, None),
        ("shop", "web-2", 50, "2.5", "3.5", None, None),
        ("search", "api-1", 10, "0.25", "2", None, None),
        ("search", "api-1", 50, "0.25", "2", None, None),
        ("kube-system", "coredns-1", 10, "0.1", "0.5", None, None),
        ("shop", "old-1", -15, "4", "4", None, None),
    ]
    await conn.executemany(
        """INSERT INTO k8s_resource_metrics (cluster_id, level, namespace, name, sampled_at,
               cpu_cores, memory_bytes, storage_bytes, network_tx_bytes)
           VALUES ($1, 'pod', $2, $3, $4, $5, $6, $7, $8)""",
        [
            (cluster, ns, pod, h + minute * m, Decimal(cpu), int(Decimal(mem) * GIB),
             None if storage is None else storage * GIB, None if tx is None else tx * GIB)
            for ns, pod, minute, cpu, mem, storage, tx in samples
        ],
    )
    return Scenario(org, cluster, h, now)
