"""The exam's event stream: events are stamped once and handed to every subscriber.

Three ways to listen:

* ``subscribe(fn, inline=True)``: called inside :meth:`EventBus.emit`, in subscription order,
  before ``emit`` returns. For the durable record (the journal: a fire-once command is on
  disk before it is sent) and hooks that must act at that very line. A *durable*
  subscriber's exception propagates to the emitter and the event goes no further (its
  sequence number is not used up); any other subscriber's exception is logged.
* ``subscribe(fn)``: called soon after, on the event loop, in order; the emitter never waits
  for it. Each subscriber has a bounded queue: when it falls ``maxsize`` events behind, the
  oldest are dropped and counted (:attr:`Subscription.dropped`). For displays and folds.
* ``stream()``: an async iterator with the same bounded queue, for consumers that await
  (a web console, telemetry); it ends when the bus closes.

Transient events (:data:`~scheduler.exam.events.TRANSIENT`) get no sequence number and no
journal line.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from drivers import Clock, DeviceEvent

from ..journal import ExamEvent
from ..records import CaptureRecord
from .events import DURABLE_KINDS, TRANSIENT, AnyEvent, Captured, DeviceReport, Event

log = logging.getLogger(__name__)

#: how far a deferred subscriber may fall behind before its oldest events are dropped
DEFAULT_QUEUE = 4096


@dataclass(frozen=True)
class Recorded:
    """An event as it happened: when (loop and wall time), and its journal number."""

    event: AnyEvent
    t_s: float
    wall: str
    seq: int | None  # None: transient, not journaled

    @property
    def kind(self) -> str:
        return self.event.kind

    @property
    def source(self) -> str:
        return self.event.source

    @property
    def step(self) -> str | None:
        return self.event.step

    @property
    def durable(self) -> bool:
        """Its loss in a machine crash would hide something done to the patient."""
        return self.kind in DURABLE_KINDS

    @cached_property
    def line(self) -> ExamEvent:
        """The journal line (only for journaled events)."""
        assert self.seq is not None, "transient events have no journal line"
        return ExamEvent(
            seq=self.seq,
            t_s=self.t_s,
            wall=self.wall,
            source=self.source,
            kind=self.kind,
            step=self.step,
            data=self.event.data(),
        )


Subscriber = Callable[[Recorded], None]


class Subscription:
    """One deferred subscriber's bounded queue."""

    def __init__(self, maxsize: int) -> None:
        self._queue: collections.deque[Recorded] = collections.deque()
        self._maxsize = maxsize
        self._wake = asyncio.Event()
        self.dropped = 0
        self.closed = False

    def put(self, recorded: Recorded) -> None:
        if len(self._queue) >= self._maxsize:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(recorded)
        self._wake.set()

    def take_all(self) -> list[Recorded]:
        items = list(self._queue)
        self._queue.clear()
        self._wake.clear()
        return items

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    async def __aiter__(self) -> AsyncIterator[Recorded]:
        while True:
            items = self.take_all()
            if not items:
                if self.closed:
                    return  # everything sent before the close was delivered
                await self._wake.wait()
                continue
            for item in items:
                yield item


@dataclass
class _Inline:
    fn: Subscriber
    durable: bool


@dataclass
class _Deferred:
    fn: Subscriber
    queue: Subscription
    scheduled: bool = False


class EventBus:
    """Stamps events (sequence, loop time, wall time) and delivers them to subscribers."""

    def __init__(self, clock: Clock, *, start_seq: int = 0) -> None:
        self._clock = clock
        self._seq = start_seq
        self._inline: list[_Inline] = []
        self._deferred: list[_Deferred] = []
        self._streams: list[Subscription] = []
        self._on_close: list[Callable[[], None]] = []
        self.closed = False

    @property
    def seq(self) -> int:
        """The last journal number handed out."""
        return self._seq

    # -- subscribing -------------------------------------------------------------------------
    def subscribe(
        self,
        fn: Subscriber,
        *,
        inline: bool = False,
        durable: bool = False,
        maxsize: int = DEFAULT_QUEUE,
    ) -> Callable[[], None]:
        """Deliver every event to ``fn``; returns the function that unsubscribes it."""
        if inline or durable:
            entry = _Inline(fn, durable)
            self._inline.append(entry)
            return lambda: self._inline.remove(entry) if entry in self._inline else None
        deferred = _Deferred(fn, Subscription(maxsize))
        self._deferred.append(deferred)

        def unsubscribe() -> None:
            self._deliver(deferred)  # what it was sent before it left, it still gets
            if deferred in self._deferred:
                self._deferred.remove(deferred)

        return unsubscribe

    def on_close(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` when the bus closes (the exam's record is closed)."""
        self._on_close.append(fn)

    def stream(self, maxsize: int = DEFAULT_QUEUE) -> Subscription:
        """An async iterator over the events from now on; ends when the bus closes."""
        sub = Subscription(maxsize)
        self._streams.append(sub)
        return sub

    # -- emitting ----------------------------------------------------------------------------
    def emit(self, event: AnyEvent, *, t_s: float | None = None) -> Recorded:
        t = self._clock.now() if t_s is None else t_s
        journaled = not (isinstance(event, Event) and event.KIND in TRANSIENT)
        recorded = Recorded(
            event=event,
            t_s=round(t, 6),
            wall=self._clock.wall_at(t).isoformat(timespec="milliseconds"),
            seq=self._seq + 1 if journaled else None,
        )
        for entry in list(self._inline):
            if entry.durable:
                entry.fn(recorded)  # a failed journal write stops the event here
        if journaled:
            self._seq += 1
        for entry in list(self._inline):
            if not entry.durable:
                _call(entry.fn, recorded)
        loop = _running_loop()
        for deferred in self._deferred:
            deferred.queue.put(recorded)
            if loop is None or self.closed:  # after the exam: no loop to keep free
                self._deliver(deferred)
            elif not deferred.scheduled:
                deferred.scheduled = True
                loop.call_soon(self._deliver, deferred)
        for sub in self._streams:
            sub.put(recorded)
        return recorded

    def emit_device(self, event: DeviceEvent, role: str, step: str | None) -> Recorded:
        report = DeviceReport(
            role=role,
            device=event.device,
            device_kind=event.kind,
            step=step,
            payload=_jsonable(event.data),
        )
        return self.emit(report, t_s=event.device_time_s)

    def flush(self) -> None:
        """Deliver everything still queued for deferred subscribers, now."""
        for deferred in list(self._deferred):
            self._deliver(deferred)

    def close(self) -> None:
        """Flush, end every stream, then tell those who asked (:meth:`on_close`)."""
        if self.closed:
            return
        self.closed = True
        self.flush()
        for sub in self._streams:
            sub.close()
        for fn in self._on_close:
            try:
                fn()
            except Exception:
                log.exception("exam event bus: close callback %r failed", fn)

    def _deliver(self, deferred: _Deferred) -> None:
        deferred.scheduled = False
        for recorded in deferred.queue.take_all():
            _call(deferred.fn, recorded)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _call(fn: Subscriber, recorded: Recorded) -> None:
    try:
        fn(recorded)
    except Exception:  # an observer's bug must never stop an exam
        log.exception("exam event subscriber %r failed on %s", fn, recorded.kind)


def _jsonable(data: Mapping[str, Any]) -> dict[str, Any]:
    """Device data as the journal stores it (what JSON cannot hold becomes its ``str``)."""
    result: dict[str, Any] = json.loads(json.dumps(dict(data), default=str))
    return result


def captures_to(fn: Callable[[CaptureRecord], None]) -> Callable[[Recorded], None]:
    """A subscriber handing ``fn`` each stored image's record."""

    def deliver(recorded: Recorded) -> None:
        event = recorded.event
        if isinstance(event, Captured) and event.record is not None:
            fn(event.record)

    return deliver


def lines_to(fn: Callable[[ExamEvent], None]) -> Callable[[Recorded], None]:
    """A subscriber handing ``fn`` each journal line (as ``events.jsonl`` has it)."""

    def deliver(recorded: Recorded) -> None:
        if recorded.seq is not None:
            fn(recorded.line)

    return deliver
