"""How this process runs Python's cyclic garbage collector, and why.

Reference counting frees almost everything a request makes: requests leave no reference
cycles (tests/graph pins that), so the cyclic collector has little to find. What it costs is
its walks. Each collection walks every object of the generations it collects, and each pause
holds the event loop, so a walk through the objects of in-flight responses is a stall for
``/healthz``, the sync and every subscriber at once.

Two measures:
- start-up objects (modules, the schema, the app) are frozen out of the collector's reach;
  they live as long as the process, yet every full collection walked all of them;
- the young generation is allowed 50,000 new objects instead of CPython's 700 before a
  collection, and a full collection is considered after 200 young ones instead of 100.

Measured with ``bench/bench_loop.py`` (four queries just under the cost limit, 24,000 pods
each, while ``/healthz`` is probed): with CPython's defaults the server made 24-35 full
collections in 12 s, 160-670 ms each, and the probe's p99 was 350-790 ms; with these
thresholds there were 0-2, the p99 was 146-194 ms, and the queries themselves ran about twice
as fast (the collector had been a quarter of their CPU).
"""

from __future__ import annotations

import gc

# (new objects before a young collection, young collections before a middle one,
#  middle collections before a full one is considered)
THRESHOLDS = (50_000, 10, 20)


def tune_after_startup() -> None:
    """Freeze what start-up built, then set the thresholds (see the module docstring)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
