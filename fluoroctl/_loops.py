"""Running an exam on the event loop its room needs, from a script or from inside a loop.

A room's time base is a property of the loop (:mod:`drivers.clock`): the in-process
simulator needs a :class:`~drivers.VirtualTimeEventLoop`, a rehearsal over links a scaled
loop, equipment a real one. A script has no loop, so :func:`run_blocking` makes the right
one. Code already inside a loop (Jupyter, an async service) cannot swap it, so
:func:`run_on_own_loop` runs the exam on its own loop in a worker thread and awaits it.

Either way an interruption reaches the exam as a cancellation of its task, which aborts the
exam into the devices' safe state before anything unwinds (as in ``fluoroctl run``).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from drivers import ScaledTimeEventLoop, VirtualTimeEventLoop, new_event_loop

T = TypeVar("T")
ClockMode = Literal["virtual", "scaled", "real"]

#: signals that abort a blocking run (Ctrl-C and a polite kill), as for ``fluoroctl run``
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass(frozen=True)
class LoopSpec:
    """The kind of loop an exam runs on."""

    mode: ClockMode
    time_scale: float = 1.0

    def new_loop(self) -> asyncio.AbstractEventLoop:
        return new_event_loop(self.mode, time_scale=self.time_scale)

    def fits(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Whether ``loop`` already keeps this time base (the exam can run on it as is)."""
        if self.mode == "virtual":
            return isinstance(loop, VirtualTimeEventLoop)
        if self.mode == "scaled":
            scaled = isinstance(loop, ScaledTimeEventLoop)
            return scaled and abs(getattr(loop, "scale", 0.0) - self.time_scale) < 1e-9
        return not isinstance(loop, VirtualTimeEventLoop | ScaledTimeEventLoop)


def refuse_running_loop(blocking: str, awaitable: str) -> None:
    """A blocking call made from inside an event loop would stall that loop: say what to use."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(
        f"fluoroctl.{blocking}() runs its own event loop and cannot be called from a running "
        f"one; inside a loop (Jupyter, async code) use `await fluoroctl.{awaitable}(...)`"
    )


class OwnLoop(Generic[T]):
    """One exam coroutine on a loop of its own, cancellable from any thread."""

    def __init__(
        self,
        new_loop: Callable[[], asyncio.AbstractEventLoop],
        exam: Callable[[], Coroutine[Any, Any, T]],
    ) -> None:
        self._new_loop = new_loop
        self._exam = exam
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[T] | None = None
        self._cancelled = False
        #: the run was stopped by a signal (Ctrl-C, SIGTERM)
        self.signalled = False

    def cancel(self) -> None:
        """Abort the exam (from any thread); before it started, it never starts."""
        with self._lock:
            self._cancelled = True
            if self._loop is not None and self._task is not None:
                self._loop.call_soon_threadsafe(self._task.cancel)

    def run(self, *, handle_signals: bool = False) -> T:
        """Run the exam to its end on a new loop in this thread; returns its result.

        ``handle_signals`` (main thread only): SIGINT and SIGTERM cancel the exam task, like
        ``fluoroctl run``; the previous handlers are put back afterwards.
        """
        loop = self._new_loop()
        try:
            with self._lock:
                task = loop.create_task(self._exam())
                self._loop, self._task = loop, task
                if self._cancelled:
                    task.cancel()
            with self._signals(loop, task) if handle_signals else contextlib.nullcontext():
                return loop.run_until_complete(task)
        finally:
            with self._lock:
                self._loop = None
            _close(loop)

    @contextlib.contextmanager
    def _signals(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> Iterator[None]:
        def stop() -> None:
            self.signalled = True
            # Every press cancels again; the runner's abort is shielded from repeats.
            task.cancel()

        previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, stop)
        try:
            yield
        finally:
            for sig in STOP_SIGNALS:
                loop.remove_signal_handler(sig)
                handler = previous[sig]
                if handler is not None:
                    signal.signal(sig, handler)


def run_blocking(
    new_loop: Callable[[], asyncio.AbstractEventLoop],
    exam: Callable[[], Coroutine[Any, Any, T]],
) -> T:
    """Run ``exam()`` on a new loop in this thread. Ctrl-C or SIGTERM (in the main thread)
    aborts the exam into the safe state, then raises :class:`KeyboardInterrupt`."""
    own = OwnLoop(new_loop, exam)
    main = threading.current_thread() is threading.main_thread()
    try:
        return own.run(handle_signals=main)
    except asyncio.CancelledError:
        if own.signalled:
            raise KeyboardInterrupt("exam interrupted: aborted into the safe state") from None
        raise


async def run_on_own_loop(
    new_loop: Callable[[], asyncio.AbstractEventLoop],
    exam: Callable[[], Coroutine[Any, Any, T]],
) -> T:
    """Await ``exam()`` running on a new loop in a worker thread.

    Cancelling the awaiting task cancels the exam; the await returns (raising
    :class:`asyncio.CancelledError`) only once the exam's abort has finished, so the caller
    never sees "cancelled" while a device may still be live.
    """
    own = OwnLoop(new_loop, exam)
    caller = asyncio.get_running_loop()
    # run_in_executor: a virtual-time caller stands still while the thread works.
    done: asyncio.Future[T] = caller.run_in_executor(None, own.run)
    try:
        return await asyncio.shield(done)
    except asyncio.CancelledError:
        if not done.done():
            own.cancel()
            while not done.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(done)
        raise


def _close(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what the exam left running (device readers), then close the loop."""
    try:
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()
