"""The node's in-process event bus: publishers never block, subscribers never hurt them.

`publish` stamps an event (id, node, time, permission), keeps it in a bounded ring (what a
reconnecting client can resume from) and offers it to every subscription. Each subscription
is a bounded queue of its own: when a consumer falls behind and its queue is full, the
subscription is marked *lagged* and takes nothing more, so a slow WebSocket client or a stuck
reconciler costs memory bounded by its queue and never slows the publisher or anyone else.

Two kinds of consumer:
- `subscribe(handler, types)`: an in-process callback (a reconciler's kick, the audit
  anchorer). It runs on its own task, one event at a time; an exception is logged and the
  next event is handled as usual. A handler that lags is logged and resumes with what comes
  next (it should re-read the state it depends on, as reconcilers do anyway).
- `stream(...)`: a `Subscription` read by a consumer task (a WebSocket client, the per-node
  stream a peer reads); lagging ends it (the client is told, and may resume from its last id).

Publishing from another thread is handed to the loop (`call_soon_threadsafe`), so stores
written from worker threads stay safe. Left out: persistence (the ring is memory only; a
restarted node's ids start above its earlier ones, and older ids are reported as a gap).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable

import msgspec

from appliance.auth.permissions import EVENT_PERMISSIONS
from appliance.events.types import Event, tag_of

RING_SIZE = 4096  # events kept for resuming (per node)
STREAM_QUEUE = 1024  # events a stream may have waiting before it counts as lagged
HANDLER_QUEUE = 256

log = logging.getLogger(__name__)


class Subscription:
    """A bounded queue of events for one consumer, filled by the publisher without waiting."""

    def __init__(self, maxsize: int = STREAM_QUEUE, accept: Callable[[Event], bool] | None = None) -> None:
        self.maxsize = maxsize
        self.accept = accept
        self.lagged = False
        self.closed = False
        self._items: deque[Event] = deque()
        self._wake = asyncio.Event()

    def offer(self, event: Event) -> None:
        """Queue `event` if this consumer wants it; on overflow mark the subscription lagged."""
        if self.lagged or self.closed or (self.accept is not None and not self.accept(event)):
            return
        if len(self._items) >= self.maxsize:
            self.lagged = True
        else:
            self._items.append(event)
        self._wake.set()

    async def next_batch(self, limit: int = 256, wait: float | None = None) -> list[Event]:
        """What is queued (up to `limit`), waiting up to `wait` seconds for something; [] on timeout,
        on close, or once lagged (check `lagged`)."""
        if not self._items and not self.lagged and not self.closed:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()
        if self.lagged:
            self._items.clear()
            return []
        batch: list[Event] = []
        while self._items and len(batch) < limit:
            batch.append(self._items.popleft())
        return batch

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    def reopen(self) -> None:
        self.closed = self.lagged = False
        self._wake = asyncio.Event()


class EventBus:
    """Stamps, keeps and fans out this node's events (see the module docstring)."""

    def __init__(self, node: str, *, clock: Callable[[], float] = time.time, ring_size: int = RING_SIZE) -> None:
        self.node = node
        self._clock = clock
        self._next_id = int(clock() * 1_000_000)  # above any id an earlier run of this node gave
        self.first_id = self._next_id
        self.ring: deque[Event] = deque(maxlen=ring_size)
        self._subscriptions: list[Subscription] = []
        self._handlers: list[tuple[Subscription, Callable[[Event], Awaitable[None] | None], str]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = 0
        self.published = 0
        self.handler_errors = 0

    # -- publishing -------------------------------------------------------------------------

    def publish(self, event: Event) -> None:
        """Stamp `event` and hand it to every subscription; never blocks, never raises."""
        if self._loop is not None and threading.get_ident() != self._thread:
            self._loop.call_soon_threadsafe(self.publish, event)
            return
        try:
            stamped = msgspec.structs.replace(
                event,
                id=self._next_id,
                node=self.node,
                at=round(self._clock(), 6),
                permission=str(EVENT_PERMISSIONS.get(tag_of(type(event)), "")),
            )
        except Exception:  # a malformed event is the publisher's bug; it must not break its caller
            log.exception("could not publish event %r", event)
            return
        self._next_id += 1
        self.published += 1
        self.ring.append(stamped)
        for subscription in self._subscriptions:
            try:
                subscription.offer(stamped)
            except Exception:  # a filter that raises drops that consumer, not the event
                log.exception("an event filter failed; closing its subscription")
                subscription.close()

    def since(self, last: int) -> tuple[list[Event], bool]:
        """The held events after id `last`, and False when some after it are no longer held
        (pushed out of the ring, or from before this node's restart)."""
        oldest = self.ring[0].id if self.ring else self._next_id
        return [e for e in self.ring if e.id > last], last + 1 >= oldest

    # -- consuming --------------------------------------------------------------------------

    def stream(self, maxsize: int = STREAM_QUEUE, accept: Callable[[Event], bool] | None = None) -> Subscription:
        """A new subscription to every event published from now on (close it with `unsubscribe`)."""
        subscription = Subscription(maxsize, accept)
        self._subscriptions.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscription.close()
        with contextlib.suppress(ValueError):
            self._subscriptions.remove(subscription)

    def subscribe(
        self,
        handler: Callable[[Event], Awaitable[None] | None],
        types: Iterable[type[Event]] | None = None,
        *,
        name: str = "",
    ) -> None:
        """Call `handler(event)` for each event of `types` (all when None), on a task of its own."""
        wanted = tuple(types) if types is not None else None
        accept = (lambda e: isinstance(e, wanted)) if wanted is not None else None
        subscription = self.stream(HANDLER_QUEUE, accept)
        self._handlers.append((subscription, handler, name or getattr(handler, "__qualname__", "handler")))
        if self._loop is not None:
            self._start_handler(self._handlers[-1])

    def count(self) -> int:
        """How many subscriptions are open."""
        return len(self._subscriptions)

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Bind to the running loop and start the handlers' tasks."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        for entry in self._handlers:
            entry[0].reopen()  # after a stop (a test app started twice): a fresh wake-up on this loop
            if entry[0] not in self._subscriptions:
                self._subscriptions.append(entry[0])
            self._start_handler(entry)

    async def stop(self) -> None:
        for subscription in list(self._subscriptions):
            subscription.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        self._loop = None

    def _start_handler(self, entry: tuple[Subscription, Callable[[Event], Awaitable[None] | None], str]) -> None:
        subscription, handler, name = entry
        self._tasks.append(asyncio.create_task(self._run_handler(subscription, handler, name), name=f"events:{name}"))

    async def _run_handler(
        self, subscription: Subscription, handler: Callable[[Event], Awaitable[None] | None], name: str
    ) -> None:
        while not subscription.closed:
            batch = await subscription.next_batch()
            if subscription.lagged:
                log.warning("event handler %s fell behind; events were dropped", name)
                subscription.lagged = False
                continue
            for event in batch:
                try:
                    result = handler(event)
                    if result is not None:
                        await result
                except Exception:
                    self.handler_errors += 1
                    log.exception("event handler %s failed on a %s event", name, tag_of(type(event)))
