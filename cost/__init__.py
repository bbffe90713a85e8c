"""Cost engine: OpenCost-style allocation of node cost to pods, rolled up to namespace,
deployment, team and cost center, with idle cost reported as its own row, query-time sharing,
budgets and the scheduler that keeps every finished hour computed.

A domain package of its own, not a room inside ``sync/``: the scheduler (run beside the sync)
and the graph's resolvers both call in, so it imports only ``app`` (the database side) and
never ``sync``, ``resolvers`` or ``schema`` (pinned by tests/cost/test_layering.py).
"""
