"""The planned read path of the inventory graph (clusters, namespaces, nodes, deployments, pods).

graphql-core executes a query field by field: for the 10,000-pod fleet tree that is ~100,000
resolver calls, Strawberry wrappers and completed values, plus an object per row, and the
reference cycles they leave for the garbage collector. Here an operation is instead planned once
from its selection set (``plan``), and a request runs the plan (``run``): one statement per
level for all parents (the very statements of ``resolvers.graph_reads``), then rows turned
straight into the response's dicts, with cursors minted only where they are selected.

The Strawberry schema stays the definition of the API: what the planner may do is read from it
(the registered ``spec`` of each type and connection field). Whatever it does not cover runs
through the resolvers, field by field inside a planned object (its holes, completed by
graphql-core on the row's model object), and a differential test holds both to the same bytes.
"""
