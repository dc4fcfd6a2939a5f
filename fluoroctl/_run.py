"""``run_exam`` / ``resume_exam``: whole exams from a script or from inside an event loop.

Both go through the same parts as ``fluoroctl run`` and ``fluoroctl resume``: the input
checks before anything is opened (:func:`scheduler.run_inputs.check_run_inputs`), the room's
links and time scale (:func:`scheduler.cli.run_links`), and :func:`scheduler.compose.run_exam`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from scheduler import compose
from scheduler import resume as resuming
from scheduler.cli import run_links, with_faults
from scheduler.exit_codes import exit_code_for
from scheduler.journal import ExamEvent
from scheduler.orders import Order, load_order
from scheduler.protocol import Protocol
from scheduler.room import Room
from scheduler.run_inputs import check_run_inputs

from ._loops import LoopSpec, refuse_running_loop, run_blocking, run_on_own_loop
from ._results import ExamOutcome, outcome_from_summary
from ._sources import (
    Loaded,
    PathOrName,
    ProtocolSource,
    RoomSource,
    patient_option,
    protocol_from,
    room_from,
)

log = logging.getLogger("fluoroctl")

Operator = Literal["scripted", "terminal"]
EventCallback = Callable[[ExamEvent], None]


@dataclass(frozen=True)
class _Prepared:
    """Everything checked and resolved before a device is opened."""

    protocol: Loaded[Protocol]
    room: Loaded[Room]
    patient: str | None
    out: Path
    links: dict[str, str]
    loop: LoopSpec
    order: Order | None = None


def _prepare(
    protocol: ProtocolSource,
    room: RoomSource | None,
    patient: PathOrName | None,
    out: str | os.PathLike[str],
    faults: Sequence[str],
    time_scale: float | None,
    endpoints: str | os.PathLike[str] | None,
    broker: str | None,
    order: Order | str | os.PathLike[str] | None = None,
) -> _Prepared:
    proto = protocol_from(protocol)
    # an order file is read (and refused, file:line:field) before anything else is touched
    order_model = order if isinstance(order, Order) or order is None else load_order(Path(order))
    where = room_from(room)
    if isinstance(faults, str):  # a lone "kind@time" is one fault, not its characters
        faults = [faults]
    room_model = with_faults(where.model, list(faults))
    out_dir = Path(out)
    patient_name = patient_option(patient)
    check_run_inputs(
        proto.path,
        proto.model,
        where.path,
        room_model,
        patient=patient_name,
        out_dir=out_dir,
        warn=log.warning,
    )
    options = argparse.Namespace(
        time_scale=time_scale,
        endpoints=None if endpoints is None else Path(endpoints),
        broker=broker,
    )
    links, scale = run_links(room_model, options)
    if room_model.clock == "virtual":
        spec = LoopSpec("virtual")
    elif scale != 1.0:
        spec = LoopSpec("scaled", scale)
    else:
        spec = LoopSpec("real")
    return _Prepared(
        Loaded(_absolute(proto.path), proto.model),
        Loaded(where.path, room_model),
        patient_name,
        out_dir,
        links,
        spec,
        order_model,
    )


def _absolute(path: Path) -> Path:
    """A file path made absolute (so ``summary.json`` names it from anywhere); a model's
    ``<protocol NAME>`` label as it is."""
    return path if path.name.startswith("<") else path.absolute()


async def _exam(
    prep: _Prepared,
    operator: Operator | None,
    force_new: bool,
    wall_anchor: dt.datetime | None,
    on_event: EventCallback | None,
) -> ExamOutcome:
    log.info(
        "exam %s in room %r on %s time, into %s",
        prep.protocol.model.name,
        prep.room.model.name,
        prep.loop.mode,
        prep.out,
    )
    outcome = await compose.run_exam(
        prep.protocol.path,
        prep.room.path,
        prep.out,
        patient=prep.patient,
        operator_mode=operator,
        wall_anchor=wall_anchor,
        on_event=on_event,
        protocol=prep.protocol.model,
        room=prep.room.model,
        links=prep.links,
        force_new=force_new,
        order=prep.order,
        order_source=None if prep.order is None else "api",
    )
    result = _typed(outcome)
    log.info("exam %s%s", result.state.value, f": {result.reason}" if result.reason else "")
    return result


def _typed(outcome: compose.RunOutcome) -> ExamOutcome:
    """The run's outcome, typed, with the exit code ``fluoroctl run`` would give it."""
    return outcome_from_summary(
        outcome.summary, outcome.out_dir.absolute(), exit_code_for(outcome.result)
    )


def run_exam(
    protocol: ProtocolSource,
    *,
    out: str | os.PathLike[str],
    room: RoomSource | None = None,
    patient: PathOrName | None = None,
    operator: Operator | None = None,
    faults: Sequence[str] = (),
    force_new: bool = False,
    time_scale: float | None = None,
    endpoints: str | os.PathLike[str] | None = None,
    broker: str | None = None,
    wall_anchor: dt.datetime | None = None,
    on_event: EventCallback | None = None,
    order: Order | str | os.PathLike[str] | None = None,
) -> ExamOutcome:
    """Run a whole exam and return its outcome; blocks until the exam ends.

    ``protocol`` and ``room`` are a path, a shipped name (``"ivu-standard"``,
    ``"simulator"``) or a loaded model; ``room=None`` is the built-in simulator. ``patient``
    is a simulated patient scenario (a name in configs/patients/ or a path). ``operator``
    answers prompts: ``"scripted"``, ``"terminal"`` or ``None`` for the room file's choice.
    ``faults`` are simulator fault specs (``"injector.occlusion@T+20s"``, docs/faults.md).
    ``time_scale``, ``endpoints`` and ``broker`` are ``fluoroctl run``'s link options.
    ``wall_anchor`` fixes the wall-clock time of loop time 0 (DICOM dates; default: now).
    ``order`` names who the exam is for and what was requested: a
    :class:`scheduler.orders.Order` or an order file's path (docs/protocols.md); its identity
    is in every object, and a weight-based protocol is dosed for its weight.

    Makes the event loop the room needs (virtual time for the in-process simulator, real or
    scaled time for rooms on links) and runs the exam on it. Everything that can be checked
    is checked before anything is created: bad input raises
    :class:`~drivers.config.ConfigError` (one line: file, line, field), a folder in use
    :class:`~scheduler.exam_dir.ExamFolderError`; preflight warnings are logged on the
    ``fluoroctl`` logger. Ctrl-C or SIGTERM aborts the exam into the safe state, writes
    ``summary.json`` and raises :class:`KeyboardInterrupt`.

    Not from inside a running event loop (:class:`RuntimeError`): use :func:`run_exam_async`.
    """
    refuse_running_loop("run_exam", "run_exam_async")
    prep = _prepare(protocol, room, patient, out, faults, time_scale, endpoints, broker, order)
    return run_blocking(
        prep.loop.new_loop, lambda: _exam(prep, operator, force_new, wall_anchor, on_event)
    )


async def run_exam_async(
    protocol: ProtocolSource,
    *,
    out: str | os.PathLike[str],
    room: RoomSource | None = None,
    patient: PathOrName | None = None,
    operator: Operator | None = None,
    faults: Sequence[str] = (),
    force_new: bool = False,
    time_scale: float | None = None,
    endpoints: str | os.PathLike[str] | None = None,
    broker: str | None = None,
    wall_anchor: dt.datetime | None = None,
    on_event: EventCallback | None = None,
    order: Order | str | os.PathLike[str] | None = None,
) -> ExamOutcome:
    """:func:`run_exam` for code inside a running event loop (Jupyter, async services).

    A running loop cannot change its time base. When it already keeps the room's (a
    :class:`~drivers.VirtualTimeEventLoop` for the simulator, a default loop for equipment)
    the exam runs on it; otherwise (the usual case for the simulator: a notebook's loop is
    real time) the exam runs on a loop of the right kind in a worker thread, and ``on_event``
    is called on *your* loop (``call_soon_threadsafe``). Input checks run in a thread too, so
    the loop stays responsive. Cancelling the awaiting task aborts the exam into the safe
    state; the ``CancelledError`` arrives once the abort has finished.
    """
    loop = asyncio.get_running_loop()
    prep = await asyncio.to_thread(
        _prepare, protocol, room, patient, out, faults, time_scale, endpoints, broker, order
    )
    if prep.loop.fits(loop):
        return await _exam(prep, operator, force_new, wall_anchor, on_event)
    log.info("the running loop does not keep %s time: exam on its own loop", prep.loop.mode)
    relay = None if on_event is None else _relay_to(loop, on_event)
    return await run_on_own_loop(
        prep.loop.new_loop, lambda: _exam(prep, operator, force_new, wall_anchor, relay)
    )


def _relay_to(loop: asyncio.AbstractEventLoop, callback: EventCallback) -> EventCallback:
    def relay(event: ExamEvent) -> None:
        loop.call_soon_threadsafe(callback, event)

    return relay


async def _resume(
    out: Path, operator: Operator | None, on_event: EventCallback | None
) -> ExamOutcome:
    return _typed(await resuming.resume_exam(out, operator_mode=operator, on_event=on_event))


def resume_exam(
    out: str | os.PathLike[str],
    *,
    operator: Operator | None = None,
    on_event: EventCallback | None = None,
) -> ExamOutcome:
    """Continue the exam in ``out`` whose controlling process died (``fluoroctl resume``).

    Runs on the exam's own time axis (a virtual loop starts at the journal's last time).
    :class:`~scheduler.recovery.RecoveryError`, with nothing changed, when another process
    holds the folder, the journal is damaged or the exam already ended. Interruption as for
    :func:`run_exam`.
    """
    refuse_running_loop("resume_exam", "resume_exam_async")
    folder = Path(out)
    # resume_loop refuses (RecoveryError) before anything is touched.
    return run_blocking(
        lambda: resuming.resume_loop(folder), lambda: _resume(folder, operator, on_event)
    )


async def resume_exam_async(
    out: str | os.PathLike[str],
    *,
    operator: Operator | None = None,
    on_event: EventCallback | None = None,
) -> ExamOutcome:
    """:func:`resume_exam` from inside a running loop: always on the exam's own loop in a
    worker thread (its clock continues the crashed process's), ``on_event`` relayed to
    your loop."""
    caller = asyncio.get_running_loop()
    folder = Path(out)
    relay = None if on_event is None else _relay_to(caller, on_event)
    return await run_on_own_loop(
        lambda: resuming.resume_loop(folder), lambda: _resume(folder, operator, relay)
    )
