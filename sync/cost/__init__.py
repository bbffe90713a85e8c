"""Cost engine: OpenCost-style allocation of node cost to pods, rolled up to namespace,
deployment, team and cost center, with idle cost reported as its own row, query-time sharing,
budgets and the scheduler that keeps every finished hour computed.

Import only ``app`` from here (never ``schema`` or ``resolvers``): the GraphQL layer calls in.
"""
