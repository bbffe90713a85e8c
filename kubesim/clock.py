"""Simulated time.

Every timestamp kubesim writes (creationTimestamp, startTime, condition transitions, metrics
windows) comes from one clock that tests move by hand, so a run is reproducible to the byte;
the demo lets it follow the wall clock instead.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def default_start() -> datetime:
    """The current hour: near enough to now for cost and partition code, stable within an hour."""
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def rfc3339(moment: datetime) -> str:
    """Kubernetes' wire form for metav1.Time (second precision, Z suffix)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class SimClock:
    """A clock that only moves when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        start = start or default_start()
        if start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
        self._now = start

    def now(self) -> datetime:
        return self._now

    def timestamp(self) -> str:
        return rfc3339(self._now)

    def advance(self, seconds: float) -> datetime:
        if seconds < 0:
            raise ValueError("simulated time does not run backwards")
        self._now += timedelta(seconds=seconds)
        return self._now
