"""The instants every date-sensitive test runs at, and a clock to hand the code under test.

Why this exists: a test that reads the wall clock passes or fails with the day it runs on
(issue 10: a budget forecast crossed its amount whenever more than ~16 days were left in the
month). The code takes ``now`` (or a clock callable) defaulting to the real UTC clock; tests
pass one of the instants below instead, so every outcome is fixed by the test itself, and
each date-sensitive test meets the calendar's edges on every run, whatever today is:

- the 1st of a month, 00:30 UTC (the previous day is in another month; the month has 31 days
  and follows a 28-day February);
- the 15th, 12:00 UTC (mid-month, on the hour);
- the last day of a month, 23:30 UTC (a leap day: 29 February);
- 31 December, 23:30 UTC (the next hour is in another year).

The clock is injected rather than faked process-wide (libfaketime) because the embedded
PostgreSQL's ``now()`` and asyncio's monotonic clock must keep real time. SQL that uses
``now()`` is either given the instant as a parameter, or tested against the server's own
``now()`` read inside the same transaction.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from starlette.applications import Starlette

from resolvers.costs import CLOCK_SERVICE, Clock

FIRST_OF_MONTH = datetime(2027, 3, 1, 0, 30, tzinfo=UTC)
MID_MONTH = datetime(2027, 3, 15, 12, 0, tzinfo=UTC)
LAST_OF_MONTH = datetime(2028, 2, 29, 23, 30, tzinfo=UTC)
NEW_YEARS_EVE = datetime(2027, 12, 31, 23, 30, tzinfo=UTC)

INSTANTS: dict[str, datetime] = {
    "first-of-month": FIRST_OF_MONTH,
    "mid-month": MID_MONTH,
    "last-of-month": LAST_OF_MONTH,
    "new-years-eve": NEW_YEARS_EVE,
}

# ``@at_each_instant`` runs a test once per instant, with the instant as its ``instant``
# argument and the instant's name in the test id.
at_each_instant = pytest.mark.parametrize("instant", list(INSTANTS.values()), ids=list(INSTANTS))


@dataclass
class FrozenClock:
    """A clock that reads ``now`` until moved: a drop-in for the code's default clock."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: timedelta) -> None:
        self.now += by


def month_start(moment: datetime) -> datetime:
    """Midnight UTC on the 1st of ``moment``'s UTC month."""
    return moment.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def add_months(moment: datetime, months: int) -> datetime:
    """The start of the UTC month ``months`` after (or before) ``moment``'s."""
    first = month_start(moment)
    index = first.year * 12 + first.month - 1 + months
    return first.replace(year=index // 12, month=index % 12 + 1)


@contextlib.contextmanager
def serving_clock(app: Starlette, clock: Clock) -> Iterator[None]:
    """While inside, the running ``app``'s resolvers read ``clock`` instead of the real one.

    The app is shared by the session, so the clock is removed again on the way out."""
    services: dict[str, object] = app.state.services
    services[CLOCK_SERVICE] = clock
    try:
        yield
    finally:
        services.pop(CLOCK_SERVICE, None)
