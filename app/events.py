"""The per-process LISTEN hub behind GraphQL subscriptions.

One dedicated connection LISTENs on ``fleetgraph_changes`` for the whole process (never one per
subscriber). Each notice is turned into events once (``resolvers.events.compute_events``, one
statement, and only when someone is listening for what it changes); the same immutable event
objects are then put on every matching subscriber's bounded queue. Putting never waits: a
subscriber whose queue is full is too slow, and is dropped (its stream ends with an error)
instead of holding up anyone else. Subscribers are indexed by organization, so an event is
only ever offered to the tenant that owns the cluster.

A subscriber may also bring an express route (``schema.express``): while its stream is parked
on an empty queue, the event is handed to the route, which writes the subscriber's frame in
this same pass without waking its task; a route that declines gets the event queued as
before. Either way the pass never awaits, so one subscriber never holds up another.

When the database goes away (restart, failover) the LISTEN connection is reopened within a
second of it answering again, and nothing the hub runs dies of the outage or reports it at
shutdown: a subscription is not the place to learn that PostgreSQL restarted an hour ago.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import asyncpg

from app.db import CONNECTION_LOST, stop_if_cancelled
from resolvers.events import (
    BUDGET_ALERTS_CHANNEL,
    CHANGES_CHANNEL,
    ChangeNotice,
    ClusterEvent,
    ExpressDelivery,
    SubscriberDropped,
    TokenRevoked,
    budget_alert_event,
    compute_events,
)

log = logging.getLogger(__name__)

DEFAULT_QUEUE_SIZE = 64
# A WebSocket authenticates once; a token revoked later ends its subscriptions within this.
REVOCATION_INTERVAL_S = 5.0
# Capped at a second: a reconnect attempt to a database that is down costs next to nothing,
# and subscriptions should resume as soon as it answers.
_RECONNECT_DELAYS = (0.2, 0.5, 1.0)
_DATABASE_GONE: tuple[type[BaseException], ...] = (*CONNECTION_LOST, asyncpg.PostgresError)
_CLOSE_FAILED: tuple[type[BaseException], ...] = (*_DATABASE_GONE, TimeoutError)


@dataclass(eq=False)
class Subscriber:
    organization_id: uuid.UUID
    topic: str
    cluster_id: uuid.UUID | None
    queue: asyncio.Queue[ClusterEvent | None]
    token_id: uuid.UUID | None = None
    express: ExpressDelivery | None = None
    dropped: bool = False
    revoked: bool = False
    # Its stream is waiting in ``queue.get()``: every earlier event has left through it, so
    # an express delivery now cannot overtake one.
    parked: bool = False

    def wants(self, event: ClusterEvent) -> bool:
        return event.topic == self.topic and self.cluster_id in (None, event.cluster_id)


@dataclass
class HubStats:
    notices: int = 0
    computed: int = 0
    delivered: int = 0
    express: int = 0  # of those delivered, written by an express route in the fan-out pass
    dropped: int = 0


class ChangeHub:
    """LISTEN once, compute once, fan out to bounded queues."""

    def __init__(self, dsn: str, pool: asyncpg.Pool, *,
                 queue_size: int = DEFAULT_QUEUE_SIZE,
                 revocation_interval: float = REVOCATION_INTERVAL_S) -> None:
        self._dsn = dsn
        self._pool = pool
        self._queue_size = queue_size
        self._revocation_interval = revocation_interval
        self._inbox: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._subscribers: dict[uuid.UUID, set[Subscriber]] = defaultdict(set)
        self._conn: asyncpg.Connection | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._reconnecting: asyncio.Task[None] | None = None
        self._closing = False
        self.stats = HubStats()
        # Told of every newly revoked token (e.g. app.sockets closes its WebSockets).
        self.revocation_listeners: list[Callable[[set[uuid.UUID]], None]] = []

    async def start(self) -> None:
        await self._listen()
        self._tasks.append(asyncio.create_task(self._work(), name="fleetgraph-events"))
        self._tasks.append(asyncio.create_task(self._watch_revocations(),
                                               name="fleetgraph-events-revocations"))

    async def stop(self) -> None:
        self._closing = True
        tasks = [*self._tasks, *([self._reconnecting] if self._reconnecting else [])]
        for task in tasks:
            task.cancel()
        for task, outcome in zip(tasks, await asyncio.gather(*tasks, return_exceptions=True),
                                 strict=True):
            if isinstance(outcome, Exception):  # already over; shutdown goes on regardless
                log.warning("%s had stopped: %s: %s", task.get_name(),
                            type(outcome).__name__, outcome)
        if self._conn is not None and not self._conn.is_closed():
            try:
                await asyncio.wait_for(self._conn.close(), 5)
            except _CLOSE_FAILED:
                self._conn.terminate()
        for subscribers in list(self._subscribers.values()):
            for subscriber in list(subscribers):
                self._end(subscriber)

    async def _listen(self) -> None:
        conn = await asyncpg.connect(self._dsn)
        try:
            await conn.add_listener(CHANGES_CHANNEL, self._on_notify)
            await conn.add_listener(BUDGET_ALERTS_CHANNEL, self._on_notify)
        except BaseException:
            conn.terminate()
            raise
        if self._closing:
            conn.terminate()
            return
        conn.add_termination_listener(self._on_lost)
        self._conn = conn

    def _on_notify(self, _conn: object, _pid: int, channel: str, payload: object) -> None:
        self._inbox.put_nowait((channel, str(payload)))

    def _on_lost(self, _conn: object) -> None:
        if self._closing or (self._reconnecting and not self._reconnecting.done()):
            return
        log.warning("LISTEN connection lost; reconnecting")
        self._reconnecting = asyncio.create_task(self._reconnect(),
                                                 name="fleetgraph-events-reconnect")

    async def _reconnect(self) -> None:
        """Notices sent while disconnected are lost; the next change of each cluster is not."""
        failures = 0
        for delay in itertools.chain(_RECONNECT_DELAYS, itertools.repeat(_RECONNECT_DELAYS[-1])):
            await asyncio.sleep(delay)
            try:
                await self._listen()
            except _DATABASE_GONE as exc:
                stop_if_cancelled()
                failures += 1
                if failures == 1:  # once per outage; it may last a while
                    log.warning("LISTEN reconnect failed (%s); retrying every %.1f s",
                                type(exc).__name__, _RECONNECT_DELAYS[-1])
                continue
            if self._conn is not None and self._conn.is_closed():
                continue  # lost again at once (its loss found this task still running)
            log.info("LISTEN connection restored")
            return

    async def _work(self) -> None:
        while True:
            channel, payload = await self._inbox.get()
            try:
                if channel == BUDGET_ALERTS_CHANNEL:
                    await self.publish_budget_alert(payload)
                else:
                    await self.publish(payload)
            except _DATABASE_GONE as exc:  # its events are lost with the database, not a bug
                stop_if_cancelled()
                log.warning("could not publish change notice: %s", type(exc).__name__)
            except Exception:  # one bad notice never stops the feed
                stop_if_cancelled()
                log.exception("could not publish change notice")

    async def _watch_revocations(self) -> None:
        """One query per interval for the whole process: tokens revoked since the last look
        end every subscription opened with them."""
        since = None
        while True:
            try:
                if since is None:
                    since = await self._pool.fetchval("SELECT now()")
                await asyncio.sleep(self._revocation_interval)
                rows = await self._pool.fetch(
                    "SELECT id, revoked_at FROM api_tokens WHERE revoked_at > $1", since)
            except _DATABASE_GONE as exc:
                stop_if_cancelled()
                log.warning("could not check for revoked tokens: %s", type(exc).__name__)
                await asyncio.sleep(self._revocation_interval)
                continue
            if rows:
                since = max(r["revoked_at"] for r in rows)
                revoked = {r["id"] for r in rows}
                self.end_token_subscriptions(revoked)
                for listener in self.revocation_listeners:
                    listener(revoked)

    def end_token_subscriptions(self, token_ids: set[uuid.UUID]) -> None:
        for subscribers in list(self._subscribers.values()):
            for subscriber in list(subscribers):
                if subscriber.token_id in token_ids:
                    subscriber.revoked = True
                    self._end(subscriber)

    async def publish(self, payload: str) -> None:
        """Compute the events of one notice (once) and offer them to its subscribers."""
        notice = ChangeNotice.parse(payload)
        self.stats.notices += 1
        if notice is None:
            log.warning("ignored unreadable change notice")
            return
        audience = self._subscribers.get(notice.organization_id) or set()
        topics = {s.topic for s in audience
                  if s.cluster_id in (None, notice.cluster_id)} & notice.topics()
        if not topics:
            return
        events = await compute_events(self._pool, notice, topics)
        self.stats.computed += len(events)
        for event in events:
            self._fan_out(event)

    async def publish_budget_alert(self, payload: str) -> None:
        """A budget's forecast crossed its amount: one lookup, then the owner's subscribers."""
        self.stats.notices += 1
        if not any(s.topic == "budgetAlerts" for subs in self._subscribers.values()
                   for s in subs):
            return
        event = await budget_alert_event(self._pool, payload)
        if event is not None:
            self.stats.computed += 1
            self._fan_out(event)

    def _fan_out(self, event: ClusterEvent) -> None:
        for subscriber in list(self._subscribers.get(event.organization_id) or ()):
            if not subscriber.wants(event):
                continue
            if subscriber.parked and subscriber.express is not None \
                    and subscriber.queue.empty() and self._express(subscriber.express, event):
                self.stats.delivered += 1
                self.stats.express += 1
                continue
            try:
                subscriber.queue.put_nowait(event)
                self.stats.delivered += 1
            except asyncio.QueueFull:
                self.stats.dropped += 1
                log.info("dropped a subscriber whose queue was full")
                self._end(subscriber, dropped=True)

    @staticmethod
    def _express(route: ExpressDelivery, event: ClusterEvent) -> bool:
        try:
            return route.deliver(event)
        except Exception:  # the subscriber's task gets it instead, and its own error path
            log.exception("express delivery failed; queued instead")
            return False

    def _end(self, subscriber: Subscriber, *, dropped: bool = False) -> None:
        """Unregister and wake the subscriber with the end-of-stream marker."""
        subscriber.dropped = subscriber.dropped or dropped
        self._subscribers[subscriber.organization_id].discard(subscriber)
        while not subscriber.queue.empty():
            subscriber.queue.get_nowait()
        subscriber.queue.put_nowait(None)

    @contextlib.asynccontextmanager
    async def subscribe(
        self, *, organization_id: uuid.UUID, topic: str, cluster_id: uuid.UUID | None,
        token_id: uuid.UUID | None = None, express: ExpressDelivery | None = None,
    ) -> AsyncIterator[AsyncIterator[ClusterEvent]]:
        subscriber = Subscriber(organization_id, topic, cluster_id,
                                asyncio.Queue(maxsize=self._queue_size), token_id, express)
        self._subscribers[organization_id].add(subscriber)
        try:
            yield self._events(subscriber)
        finally:
            self._subscribers[organization_id].discard(subscriber)
            if not self._subscribers[organization_id]:
                self._subscribers.pop(organization_id, None)

    async def _events(self, subscriber: Subscriber) -> AsyncIterator[ClusterEvent]:
        while True:
            subscriber.parked = True
            try:
                event = await subscriber.queue.get()
            finally:
                subscriber.parked = False
            if event is None:
                if subscriber.revoked:
                    raise TokenRevoked("the token of this subscription was revoked")
                if subscriber.dropped:
                    raise SubscriberDropped("this subscriber fell behind and was dropped; "
                                            "subscribe again")
                return
            yield event

    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._subscribers.values())
