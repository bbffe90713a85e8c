"""Run-time switches for the ways a real API server misbehaves.

The sync engine's worth is in how it survives trouble: slow answers, cut watch streams,
500s, throttling with ``Retry-After``, ``410 Gone``, a cluster without metrics-server, and an
API server that vanishes and comes back. Tests flip these on and off while the server runs;
the HTTP layer asks this object before answering each request.

Going down altogether is on :class:`kubesim.server.KubeSim` (``await sim.down()`` /
``await sim.up()``) because it closes the listener itself.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(slots=True)
class ErrorRule:
    """Answer matching requests with ``status`` (``count`` times, or with probability ``rate``)."""

    status: int
    count: int | None = None
    rate: float | None = None
    retry_after: int | None = None
    path_contains: str | None = None
    methods: frozenset[str] | None = None
    hits: int = 0

    def applies(self, method: str, path: str) -> bool:
        if self.path_contains and self.path_contains not in path:
            return False
        return not (self.methods and method.upper() not in self.methods)


@dataclass
class Faults:
    """Fault switches; ``reset()`` turns them all off.

    Attributes you may set directly:

    * ``latency`` - seconds added before every answer (``latency_jitter`` adds up to that
      much more, from a seeded RNG).
    * ``metrics_available`` - ``False`` makes ``metrics.k8s.io`` vanish: 404 on its paths
      and no entry in ``/apis``, like a cluster without metrics-server.
    """

    latency: float = 0.0
    latency_jitter: float = 0.0
    metrics_available: bool = True
    seed: int = 0
    _rules: list[ErrorRule] = field(default_factory=list)
    _watch_cuts: int = 0
    _cut_every_watch: bool = False
    _forced_410: int = 0
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(f"kubesim-faults-{self.seed}")

    # -- errors ----------------------------------------------------------------------
    def inject_error(
        self,
        status: int = 500,
        *,
        count: int | None = 1,
        rate: float | None = None,
        retry_after: int | None = None,
        path_contains: str | None = None,
        methods: tuple[str, ...] | None = None,
    ) -> ErrorRule:
        """Fail matching requests: the next ``count`` of them, or each with probability ``rate``.

        ``count=None`` with ``rate=None`` fails every matching request until ``clear_errors()``.
        A 429 (or any rule with ``retry_after``) carries a ``Retry-After`` header.
        """
        if status == 429 and retry_after is None:
            retry_after = 1
        rule = ErrorRule(
            status,
            count=count if rate is None else None,
            rate=rate,
            retry_after=retry_after,
            path_contains=path_contains,
            methods=frozenset(m.upper() for m in methods) if methods else None,
        )
        self._rules.append(rule)
        return rule

    def fail_next(
        self, count: int = 1, *, status: int = 500, path_contains: str | None = None
    ) -> ErrorRule:
        """The next ``count`` requests get a 500 InternalError (or ``status``)."""
        return self.inject_error(status, count=count, path_contains=path_contains)

    def throttle_next(
        self, count: int = 1, *, retry_after: int = 1, path_contains: str | None = None
    ) -> ErrorRule:
        """The next ``count`` requests get 429 TooManyRequests with ``Retry-After``."""
        return self.inject_error(
            429, count=count, retry_after=retry_after, path_contains=path_contains
        )

    def clear_errors(self) -> None:
        self._rules.clear()

    def take_error(self, method: str, path: str) -> ErrorRule | None:
        """The rule that fails this request, if any (consumes one use of a counted rule)."""
        for rule in list(self._rules):
            if not rule.applies(method, path):
                continue
            if rule.rate is not None:
                if self._rng.random() < rule.rate:
                    rule.hits += 1
                    return rule
                continue
            if rule.count is not None:
                rule.count -= 1
                if rule.count <= 0:
                    self._rules.remove(rule)
            rule.hits += 1
            return rule
        return None

    # -- watch streams ---------------------------------------------------------------
    def cut_watches(self, count: int | None = 1) -> None:
        """Cut watch streams in the middle of an event: half the JSON line, then the socket
        is aborted. ``count`` events are cut (one per stream); ``None`` cuts every event until
        ``reset()``."""
        if count is None:
            self._cut_every_watch = True
        else:
            self._watch_cuts += count

    def take_watch_cut(self) -> bool:
        if self._cut_every_watch:
            return True
        if self._watch_cuts > 0:
            self._watch_cuts -= 1
            return True
        return False

    # -- 410 Gone --------------------------------------------------------------------
    def force_410(self, count: int = 1) -> None:
        """The next ``count`` watches (an ERROR event) or lists that carry a resourceVersion or
        continue token (HTTP 410) are told their version is too old."""
        self._forced_410 += count

    def take_forced_410(self) -> bool:
        if self._forced_410 > 0:
            self._forced_410 -= 1
            return True
        return False

    # -- all -------------------------------------------------------------------------
    def reset(self) -> None:
        """Every switch off."""
        self.latency = 0.0
        self.latency_jitter = 0.0
        self.metrics_available = True
        self._rules.clear()
        self._watch_cuts = 0
        self._cut_every_watch = False
        self._forced_410 = 0

    def added_latency(self) -> float:
        if self.latency_jitter:
            return self.latency + self._rng.random() * self.latency_jitter
        return self.latency
