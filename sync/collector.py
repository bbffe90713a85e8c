"""The cyclic garbage collector, paused while a large tree of objects is built.

Listing a large cluster builds hundreds of thousands of small objects in a few tight loops:
orjson parsing a page, the mappers turning its items into rows, the writer fitting rows into
COPY records. With the collector on, every 700 allocations start a collection that walks the
young objects, promotes the survivors, and, as they pile up in the oldest generation, sets
off collections of the whole heap: measured on kubesim's large fleet, that was half the time
of each of those loops.

What those loops build are trees (JSON documents, row dicts, record tuples): they hold no
reference cycles, so reference counting frees their garbage, and whatever else they leave (a
logged exception's traceback) is only collected a little later. The collector is paused for
the length of one such loop, which never awaits (nothing else runs on the event loop
meanwhile), and a collector someone else turned off stays off.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["collector_paused"]


@contextlib.contextmanager
def collector_paused(*, when: bool = True) -> Iterator[None]:
    """Run the block with the cyclic collector paused (if ``when`` and it is on)."""
    if not when or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
