"""Fault injection for the simulated room: ``KIND[*COUNT]@TIME`` specs, parsed and applied.

Grammar (docs/faults.md)::

    spec  := KIND [ "*" COUNT ] "@" TIME
    TIME  := [ "T+" ] DURATION        T+ … after the injector-reported injection start;
                                      otherwise after the exam start (the room opening)
    DURATION := 20s | 5min | 1min30s | 1h | 300 | 2.5   (plain numbers are seconds)

Examples: ``injector.occlusion@T+20s``, ``generator@300``, ``generator*3@T+1min``,
``table.stall@2min``, ``detector.dropped_frames@T+4min``, ``carm.link_lost@T+6min``,
``injector.local_start@T+2min``.

:func:`parse_fault` turns one spec into a :class:`FaultSpec` (or raises
:class:`FaultSpecError` naming what is wrong); :class:`FaultInjector` arms a list of specs on a
:class:`~hardware_sim.room.SimRoom` on its clock. ``fluoroctl run --fault`` and
``fluoroctl sim serve --fault`` both go through these two.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import re
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from drivers import CArm, DeviceEvent, DeviceLost, Injector, InjectorFault, Table

if TYPE_CHECKING:
    from .room import SimRoom

#: every fault kind and what it does to the simulated room
KINDS: dict[str, str] = {
    "injector.over_pressure": "the injector halts with an over-pressure fault",
    "injector.air": "the injector's air detector trips; the injector halts",
    "injector.occlusion": "the line occludes; the injector halts",
    "injector.stall": "the injector's motor stalls; the injector halts",
    "injector.local_start": "someone presses start at the injector itself: its loaded program "
    "runs (loaded again if its injection had ended), an injection the host did not command",
    "generator": "the next COUNT acquisitions fail in the generator before beam-on (no dose)",
    "detector.dropped_frames": "the detector loses the next COUNT frames after exposure",
    "table.stall": "the table drive stalls (a move in progress stops, else the next move does)",
    "carm.link_lost": "the C-arm's link drops: every command fails (DeviceLost)",
    "table.link_lost": "the table's link drops: every command fails (DeviceLost)",
    "injector.link_lost": "the injector's link drops (the injector runs its program on)",
    "carm.hang": "the C-arm stops answering: commands never return",
    "table.hang": "the table stops answering: commands never return",
    "injector.hang": "the injector stops answering: commands never return",
}
#: faults of the links themselves, only where there are links (``fluoroctl sim serve``)
LINK_KINDS: dict[str, str] = {
    "carm.link_close": "the C-arm's serial port closes (the pty is replaced at the same path)",
    "table.link_close": "the table's serial port closes (the pty is replaced at the same path)",
    "detector.link_close": "the detector's USB device disappears (the host must reopen it)",
    "effects.link_close": "the simulated patient's TCP link is reset",
    "carm.garbage": "64 bytes of line noise on the C-arm's serial port",
    "table.garbage": "64 bytes of line noise on the table's serial port",
    "injector.garbage": "a garbage MQTT message on the injector's topic",
    "detector.usb_fail": "the detector's next USB bulk transfer fails",
    "broker.restart": "the MQTT broker sim serve started is restarted (same port)",
}
KINDS |= LINK_KINDS
ALIASES: dict[str, str] = {
    "injector.overpressure": "injector.over_pressure",
    "injector.air_detected": "injector.air",
    "injector.motor_stall": "injector.stall",
    "carm.generator": "generator",
    "generator.fault": "generator",
    "detector": "detector.dropped_frames",
    "detector.dropped_frame": "detector.dropped_frames",
    "injector.local": "injector.local_start",
}
_INJECTOR_FAULTS = {
    "injector.over_pressure": InjectorFault.OVER_PRESSURE,
    "injector.air": InjectorFault.AIR_DETECTED,
    "injector.occlusion": InjectorFault.OCCLUSION,
    "injector.stall": InjectorFault.MOTOR_STALL,
}
_COUNTED = ("generator", "detector.dropped_frames")

_SPEC = re.compile(r"^(?P<kind>[a-z_.]+)(?:\*(?P<count>\d+))?@(?P<time>.+)$")
_DURATION = re.compile(
    r"^(?:(?P<h>\d+(?:\.\d+)?)h)?(?:(?P<min>\d+(?:\.\d+)?)min)?(?:(?P<s>\d+(?:\.\d+)?)s)?$"
)
GRAMMAR = "KIND[*COUNT]@TIME, TIME = [T+]DURATION (e.g. injector.occlusion@T+20s, generator@300)"
#: the latest a fault may be armed: a day after its origin (no exam lasts longer)
MAX_FAULT_TIME_S = 24 * 3600.0
#: the most exposures or frames one counted fault may affect
MAX_COUNT = 1000


class FaultSpecError(ValueError):
    """A ``--fault`` spec that does not parse; the message says what and how to fix it."""


@dataclass(frozen=True, slots=True)
class FaultSpec:
    kind: str  # a key of KINDS
    at_s: float
    relative_to: Literal["exam", "injection"] = "exam"
    count: int = 1
    text: str = ""

    def __str__(self) -> str:
        count = f"*{self.count}" if self.count != 1 else ""
        t = f"T+{self.at_s:g}s" if self.relative_to == "injection" else f"{self.at_s:g}s"
        return f"{self.kind}{count}@{t}"


def _duration(spec: str, text: str) -> float:
    """Seconds of a TIME; NaN, infinite, negative and over-a-day times are refused."""
    text = text.strip().replace(" ", "")
    try:
        seconds = float(text)
    except ValueError:
        m = _DURATION.match(text)
        if not text or m is None or not any(m.groupdict().values()):
            raise FaultSpecError(
                f"fault {spec!r}: invalid time {text!r} (use e.g. 20s, 5min, 1min30s or 300)"
            ) from None
        h, mins, s = (float(m.group(g) or 0.0) for g in ("h", "min", "s"))
        seconds = h * 3600 + mins * 60 + s
    if not math.isfinite(seconds) or seconds < 0:
        raise FaultSpecError(
            f"fault {spec!r}: time {text!r} is not a time (a finite number of seconds, 0 or more)"
        )
    if seconds > MAX_FAULT_TIME_S:
        raise FaultSpecError(
            f"fault {spec!r}: time {text!r} is {seconds:.6g} s, more than 24 h after its origin"
        )
    return seconds


def parse_fault(spec: str) -> FaultSpec:
    """``injector.occlusion@T+20s`` → FaultSpec(kind="injector.occlusion", at_s=20, …).

    Pure: raises :class:`FaultSpecError` (one line, naming ``spec``) for an unknown kind, a
    COUNT where none is taken or over :data:`MAX_COUNT`, and a time that is NaN, infinite,
    negative or more than :data:`MAX_FAULT_TIME_S` after its origin.
    """
    text = spec.strip()
    m = _SPEC.match(text.lower())
    if m is None:
        raise FaultSpecError(f"fault {spec!r}: expected {GRAMMAR}")
    kind = ALIASES.get(m.group("kind"), m.group("kind"))
    if kind not in KINDS:
        raise FaultSpecError(
            f"fault {spec!r}: unknown kind {m.group('kind')!r} (known: {', '.join(KINDS)})"
        )
    count = int(m.group("count") or 1)
    if m.group("count") is not None and kind not in _COUNTED:
        raise FaultSpecError(f"fault {spec!r}: only {' and '.join(_COUNTED)} take *COUNT")
    if not 1 <= count <= MAX_COUNT:
        raise FaultSpecError(f"fault {spec!r}: COUNT must be 1 to {MAX_COUNT}")
    time_text = m.group("time").strip()
    relative: Literal["exam", "injection"] = "exam"
    if time_text.startswith("t+"):
        relative, time_text = "injection", time_text[2:]
    elif time_text.startswith("t"):
        raise FaultSpecError(f"fault {spec!r}: injection-relative times are written T+20s")
    at = _duration(spec, time_text)
    return FaultSpec(kind, at, relative, count, text)


def parse_faults(
    specs: str | list[str] | tuple[str, ...], *, links: bool = True
) -> list[FaultSpec]:
    """Several specs: a list, or one string separated by commas or semicolons.

    Pure (opens nothing, arms nothing), so a CLI can refuse bad specs before it creates
    anything. ``links=False`` (an in-process room) also refuses the :data:`LINK_KINDS`.
    """
    items = re.split(r"[;,]", specs) if isinstance(specs, str) else list(specs)
    parsed = [parse_fault(s) for s in items if s.strip()]
    if not links:
        _refuse_link_faults(parsed)
    return parsed


def _refuse_link_faults(specs: list[FaultSpec]) -> None:
    link_specs = [repr(s.text or str(s)) for s in specs if s.kind in LINK_KINDS]
    if link_specs:
        raise FaultSpecError(
            f"fault {', '.join(link_specs)} breaks links; only `fluoroctl sim serve` has "
            "links (an in-process room uses carm.link_lost etc.)"
        )


def _finite(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"not a finite time: {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class FiredFault:
    spec: FaultSpec
    t_s: float


class FaultInjector:
    """Arms fault specs on a simulated room; ``fired`` lists what happened and when.

    Each spec fires once per exam. :meth:`snapshot` is the plain-data record the room saves
    (when the exam began, which specs fired); a room restored after a controller crash hands
    it to :meth:`restore`, and :meth:`apply` then never re-arms a fired spec and arms the
    others at their original absolute times (exam start + TIME, or the injector-reported
    injection start + TIME for ``T+`` specs).
    """

    def __init__(self, room: SimRoom) -> None:
        self._room = room
        self._loop = asyncio.get_running_loop()
        self._handles: list[asyncio.TimerHandle] = []
        self._waiting: list[FaultSpec] = []
        self._unsubscribe: Callable[[], None] | None = None
        self.fired: list[FiredFault] = []
        #: loop time exam-relative specs count from (the room's opening, or the restored one)
        self.exam_start_s: float | None = None
        #: specs (canonical ``str(spec)``) that fired before a restore: not armed again
        self._fired_before: Counter[str] = Counter()
        #: applies LINK_KINDS faults; only ``sim serve`` has links to break
        self.link_faults: Callable[[str], str] | None = None
        self.log: Callable[[str], None] = lambda _msg: None
        #: called after a fault fired and took effect (the room saves its state)
        self.on_fired: Callable[[FiredFault], None] = lambda _fired: None

    def apply(self, specs: list[FaultSpec], exam_start_s: float | None = None) -> None:
        if self.link_faults is None:
            _refuse_link_faults(specs)
        if exam_start_s is not None:
            self.exam_start_s = exam_start_s
        elif self.exam_start_s is None:
            self.exam_start_s = self._room.clock.now()
        start = self.exam_start_s
        started = self._room.injector.injection_started_at
        for spec in specs:
            if self._fired_before[str(spec)] > 0:
                self._fired_before[str(spec)] -= 1
                self.log(f"fault {spec}: fired before the restart; not armed again")
            elif spec.relative_to == "exam":
                self._arm(spec, start + spec.at_s)
            elif started is not None:
                self._arm(spec, started + spec.at_s)
            else:
                self._waiting.append(spec)
        if self._waiting and self._unsubscribe is None:
            self._unsubscribe = self._room.injector.subscribe(self._on_injector)

    def snapshot(self) -> dict[str, Any]:
        """Plain data for the room's saved state."""
        return {
            "exam_start_s": self.exam_start_s,
            "fired": [{"spec": str(f.spec), "t_s": f.t_s} for f in self.fired],
        }

    def restore(self, record: Mapping[str, Any], shift_s: float = 0.0) -> None:
        """Take back a :meth:`snapshot` (loop times moved by ``shift_s``); call before apply.

        A record that is not what :meth:`snapshot` writes raises ValueError/KeyError/TypeError.
        """
        start = record.get("exam_start_s")
        self.exam_start_s = None if start is None else _finite(start) + shift_s
        fired = [
            FiredFault(parse_fault(str(f["spec"])), _finite(f["t_s"]) + shift_s)
            for f in record.get("fired", [])
        ]
        self.fired = fired + self.fired
        self._fired_before.update(str(f.spec) for f in fired)

    def cancel(self) -> None:
        for handle in self._handles:
            handle.cancel()
        self._handles.clear()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _on_injector(self, event: DeviceEvent) -> None:
        started = event.data.get("started_at_s")
        if event.kind != "injection_started" or not isinstance(started, int | float):
            return
        waiting, self._waiting = self._waiting, []
        for spec in waiting:
            self._arm(spec, float(started) + spec.at_s)

    def _arm(self, spec: FaultSpec, at: float) -> None:
        when = max(at, self._loop.time())
        self._handles.append(self._loop.call_at(when, self._fire, spec))

    def _fire(self, spec: FaultSpec) -> None:
        # Recorded before it takes effect: the device's own events save the room's state
        # (and may be the last thing a crashing controller journals), so the record that it
        # fired is never behind its effect; fire-once, like the commands it imitates.
        fired = FiredFault(spec, self._room.clock.now())
        self.fired.append(fired)
        self._apply_fault(spec)
        self.on_fired(fired)

    def _apply_fault(self, spec: FaultSpec) -> None:
        room = self._room
        kind = spec.kind
        if kind in LINK_KINDS:
            assert self.link_faults is not None
            try:
                self.log(f"fault {spec}: {self.link_faults(kind)}")
            except Exception as exc:  # a fault that cannot fire is reported, never fatal
                self.log(f"fault {spec}: not applied: {exc}")
            return
        if kind == "injector.local_start":
            self.log(f"fault {spec}: fired: {room.injector.local_start()}")
            return
        self.log(f"fault {spec}: fired")
        if kind in _INJECTOR_FAULTS:
            room.injector.trip(_INJECTOR_FAULTS[kind])
        elif kind == "generator":
            room.carm.fail_next_exposures(spec.count)
        elif kind == "detector.dropped_frames":
            room.carm.drop_next_frames(spec.count)
        elif kind == "table.stall":
            room.table.stall()
        else:
            role, mode = kind.split(".")
            device: CArm | Table | Injector = getattr(room, role)
            cut_link(device, hang=mode == "hang")


def _contract_hooks(device: object) -> list[str]:
    """The ``_name`` coroutine hooks the device's contract base class declares."""
    for base in (CArm, Table, Injector):
        if isinstance(device, base):
            return [
                name
                for name, value in vars(base).items()
                if name.startswith("_")
                and not name.startswith("__")
                and inspect.iscoroutinefunction(value)
            ]
    raise TypeError(f"not a device: {device!r}")


def cut_link(device: CArm | Table | Injector, *, hang: bool = False) -> None:
    """From now on every command to ``device`` fails with DeviceLost (or never returns).

    The device itself runs on (an injector finishes its program); only the link is gone,
    so its events stop reaching the controller too.
    """

    def make(name: str) -> Callable[..., Coroutine[Any, Any, Any]]:
        async def dead(*_args: object, **_kwargs: object) -> Any:
            if hang:
                await asyncio.get_running_loop().create_future()  # never answers
            raise DeviceLost(device.name, name.lstrip("_"), "link lost")

        return dead

    for name in _contract_hooks(device):
        setattr(device, name, make(name))
    setattr(device, "_publish", lambda _event: None)  # noqa: B010 - instance override
