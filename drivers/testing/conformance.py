"""Conformance checks any backend's tests can run against the devices it opens.

Subclass :class:`DeviceConformance` in a test module (pytest collects its ``test_*``
methods) and give it the factory that opens your devices::

    from drivers.testing.conformance import DeviceConformance

    class TestAcme(DeviceConformance):
        roles = ("injector",)

        @staticmethod
        async def open_devices(clock):
            return await open_acme_room(RoomRequest({"injector": "acme://i"}, clock))

Every check runs on a fresh virtual-time loop, so bounds are exact and nothing waits for the
wall clock. The checks: safe states are reached and bounded; every public await is bounded (a
hook that never returns gives a typed :class:`~drivers.DeviceTimeout`); fire-once commands
(injection start, exposure) reach the driver exactly once, also after a timeout, and a second
start does not start a second injection; status values have the contract's shape; faults are
reported as typed events carrying a tuple of fault names; events carry device time mapped
onto the host clock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ClassVar, TypeVar

import pytest

from ..backends import DeviceSet, RoomDevices
from ..carm import CArm, CArmStatus, CollimationField, PositionerPose, Technique
from ..clock import Clock, VirtualTimeEventLoop
from ..errors import DeviceError, DeviceTimeout
from ..events import DeviceEvent
from ..injector import (
    InjectionPhase,
    InjectionProgram,
    Injector,
    InjectorFault,
    InjectorState,
    InjectorStatus,
)
from ..table import Table, TablePosition, TableStatus

T = TypeVar("T")
OpenDevices = Callable[[Clock], Awaitable[DeviceSet | RoomDevices]]

#: A short program every injector must accept: 5 ml at 2 ml/s.
PROGRAM = InjectionProgram((InjectionPhase(2.0, 5.0),), pressure_limit_kpa=2000.0)
TECHNIQUE = Technique(kv=70.0, ma=400.0, exposure_ms=50.0)
BOUND_S = 0.5  # the bound the hang checks give each call
_ENDED = (InjectorState.COMPLETED, InjectorState.STOPPED, InjectorState.FAULTED)

#: (role, public call, hook it awaits): each public await and the hook that can hang it.
CALLS: tuple[tuple[str, str, str], ...] = (
    ("carm", "set_technique", "_set_technique"),
    ("carm", "move_positioner", "_move_positioner"),
    ("carm", "set_collimation", "_set_collimation"),
    ("carm", "expose", "_expose"),
    ("carm", "beam_off", "_beam_off"),
    ("carm", "status", "_status"),
    ("table", "move_to", "_move_to"),
    ("table", "stop", "_stop"),
    ("table", "status", "_status"),
    ("injector", "arm", "_arm"),
    ("injector", "disarm", "_disarm"),
    ("injector", "start", "_start"),
    ("injector", "wait_started", "_wait_started"),
    ("injector", "wait_finished", "_wait_finished"),
    ("injector", "hold", "_hold"),
    ("injector", "resume", "_resume"),
    ("injector", "stop", "_stop"),
    ("injector", "status", "_status"),
)


def _call(device: Any, name: str) -> Coroutine[Any, Any, object]:
    """The public call with the contract's arguments and an explicit bound."""
    args: dict[str, tuple[object, ...]] = {
        "set_technique": (TECHNIQUE,),
        "move_positioner": (PositionerPose(),),
        "set_collimation": (CollimationField(300.0, 400.0),),
        "move_to": (TablePosition(),),
        "arm": (PROGRAM,),
    }
    coro: Coroutine[Any, Any, object] = getattr(device, name)(
        *args.get(name, ()), timeout_s=BOUND_S
    )
    return coro


class DeviceConformance:
    """Checks of the device contracts; subclass and implement :meth:`open_devices`."""

    #: the roles the backend serves (a vendor injector: ``("injector",)``)
    roles: ClassVar[tuple[str, ...]] = ("carm", "table", "injector")
    #: False for a backend that publishes no events at all (the mock)
    emits_events: ClassVar[bool] = True

    @staticmethod
    async def open_devices(clock: Clock) -> DeviceSet | RoomDevices:
        raise NotImplementedError("a conformance test class must implement open_devices")

    async def trip_injector_fault(
        self, devices: DeviceSet | RoomDevices, fault: InjectorFault
    ) -> bool:
        """Make the opened injector detect ``fault`` now; False if the backend cannot."""
        return False

    # -- plumbing ---------------------------------------------------------------------------
    def run(self, body: Callable[[DeviceSet | RoomDevices, Clock], Awaitable[T]]) -> T:
        """``body(devices, clock)`` on a fresh virtual-time loop; the devices are closed after."""

        async def main() -> T:
            clock = Clock.for_running_loop()
            devices = await self.open_devices(clock)
            try:
                return await body(devices, clock)
            finally:
                if devices.close is not None:
                    await devices.close()

        loop = VirtualTimeEventLoop()
        try:
            return loop.run_until_complete(main())
        finally:
            loop.close()

    def device(self, devices: DeviceSet | RoomDevices, role: str) -> Any:
        device = getattr(devices, role)
        assert device is not None, f"the backend opened no {role}"
        return device

    def served(self, role: str) -> None:
        if role not in self.roles:
            pytest.skip(f"this backend does not serve the {role}")

    # -- checks -----------------------------------------------------------------------------
    def test_devices_implement_the_contracts(self) -> None:
        kinds = {"carm": CArm, "table": Table, "injector": Injector}

        async def body(devices: DeviceSet | RoomDevices, clock: Clock) -> None:
            for role in self.roles:
                assert isinstance(self.device(devices, role), kinds[role]), role

        self.run(body)

    def test_status_has_the_contract_shape(self) -> None:
        async def body(devices: DeviceSet | RoomDevices, clock: Clock) -> None:
            shapes: dict[str, type[Any]] = {
                "carm": CArmStatus,
                "table": TableStatus,
                "injector": InjectorStatus,
            }
            for role in self.roles:
                status: Any = await self.device(devices, role).status()
                assert isinstance(status, shapes[role]), (role, status)
                assert isinstance(status.faults, tuple), (role, status.faults)
            if "injector" in self.roles:
                s: InjectorStatus = await self.device(devices, "injector").status()
                assert isinstance(s.state, InjectorState)
                assert s.delivered_ml >= 0 and s.flow_ml_s >= 0 and s.pressure_kpa >= 0
                assert all(isinstance(f, InjectorFault) for f in s.faults)

        self.run(body)

    def test_safe_states_are_reached_within_their_bounds(self) -> None:
        async def body(devices: DeviceSet | RoomDevices, clock: Clock) -> None:
            if "injector" in self.roles:
                injector: Injector = self.device(devices, "injector")
                await injector.arm(PROGRAM)
                await injector.start()
            for role in self.roles:
                # the contract's own default bound (0.1 s + the link allowance)
                await self.device(devices, role).safe_state()
            if "carm" in self.roles:
                assert not (await self.device(devices, "carm").status()).beam_on
            if "table" in self.roles:
                assert not (await self.device(devices, "table").status()).moving
            if "injector" in self.roles:
                s = await self.device(devices, "injector").status()
                assert s.state not in (InjectorState.INJECTING, InjectorState.HOLDING), s
                assert s.state is not InjectorState.ARMED, s
                assert s.flow_ml_s == 0.0, s
                again = await self.device(devices, "injector").status(timeout_s=1.0)
                await asyncio.sleep(5.0)  # nothing flows after the safe state
                later = await self.device(devices, "injector").status()
                assert later.delivered_ml == pytest.approx(again.delivered_ml), (again, later)

        self.run(body)

    @pytest.mark.parametrize(("role", "call", "hook"), CALLS, ids=[f"{r}.{c}" for r, c, _ in CALLS])
    def test_every_public_await_is_bounded(self, role: str, call: str, hook: str) -> None:
        self.served(role)

        async def body(devices: DeviceSet | RoomDevices, clock: Clock) -> None:
            device = self.device(devices, role)
            calls: list[float] = []

            async def hung(*_args: object) -> object:
                calls.append(clock.now())
                await asyncio.Event().wait()
                raise AssertionError("unreachable")

            setattr(device, hook, hung)  # the instance's hook never returns
            began = clock.now()
            with pytest.raises(DeviceTimeout) as caught:
                await _call(device, call)
            bound = BOUND_S + device.latency_allowance_s
            assert clock.now() - began == pytest.approx(bound, abs=1e-6)
            assert caught.value.device == device.name
            assert len(calls) == 1, f"{hook} awaited {len(calls)} times by {call}"

        self.run(body)

    @pytest.mark.parametrize(
        ("role", "call", "hook"), [("injector", "start", "_start"), ("carm", "expose", "_expose")]
    )
    def test_fire_once_commands_are_never_resent(self, role: str, call: str, hook: str) -> None:
        self.served(role)

        async def body(devices: DeviceSet | RoomDevices, clock: Clock) -> None:
            device = self.device(devices, role)
            if role == "injector":
                await device.arm(PROGRAM)
            else:
                await device.set_technique(TECHNIQUE)
            sent: list[float] = []

            async def hung(*_args: object) -> object:
                sent.append(clock.now())
                await asyncio.Event().wait()
                raise AssertionError("unreachable")

            setattr(device, hook, hung)
            with pytest.raises(DeviceTimeout):
                await _call(device, call)
            await asyncio.sleep(10.0)  # a driver that retries in the background would by now
            assert len(sent) == 1, f"{call} sent {len(sent)} times"

        self.run(body)

    def test_a_second_start_does_not_start_a_second_injection(self) -> None:
        self.served("injector")

        async def body(devices: DeviceSet | RoomDevices, clock: Clock) -> None:
            injector: Injector = self.device(devices, "injector")
            await injector.arm(PROGRAM)
            await injector.start()
            first = await injector.wait_started()
            with contextlib.suppress(DeviceError):  # refused: the right answer
                await injector.start()
            done = await injector.wait_finished(timeout_s=PROGRAM.nominal_duration_s + 10.0)
            assert done.state is InjectorState.COMPLETED, done
            assert done.started_at_s == first.started_at_s
            assert done.delivered_ml == pytest.approx(PROGRAM.volume_ml, abs=0.05)

        self.run(body)

    def test_events_carry_device_time_on_the_host_clock(self) -> None:
        self.served("injector")
        if not self.emits_events:
            pytest.skip("this backend publishes no events")

        async def body(devices: DeviceSet | RoomDevices, clock: Clock) -> None:
            injector: Injector = self.device(devices, "injector")
            events: list[DeviceEvent] = []
            injector.subscribe(events.append)
            opened = clock.now()
            await injector.arm(PROGRAM)
            await injector.start()
            started = await injector.wait_started()
            await injector.wait_finished(timeout_s=PROGRAM.nominal_duration_s + 10.0)
            assert events, "no events"
            for event in events:
                assert isinstance(event.device_time_s, float), event
                assert opened - 1e-6 <= event.device_time_s <= clock.now() + 1e-6, event
            kinds = [e.kind for e in events]
            assert "injection_started" in kinds and "completed" in kinds, kinds
            # the moment flow began, on the host clock, as the status reports it
            flow = next(e for e in events if e.kind == "injection_started")
            assert flow.data["started_at_s"] == pytest.approx(started.started_at_s), flow
            assert flow.device_time_s >= flow.data["started_at_s"] - 1e-6, flow
            end = next(e for e in events if e.kind == "completed")
            assert end.data["delivered_ml"] == pytest.approx(PROGRAM.volume_ml, abs=0.05)

        self.run(body)

    def test_faults_are_typed_events_with_a_tuple_of_names(self) -> None:
        self.served("injector")

        async def body(devices: DeviceSet | RoomDevices, clock: Clock) -> bool:
            injector: Injector = self.device(devices, "injector")
            events: list[DeviceEvent] = []
            injector.subscribe(events.append)
            await injector.arm(PROGRAM)
            await injector.start()
            await injector.wait_started()
            if not await self.trip_injector_fault(devices, InjectorFault.OCCLUSION):
                return False
            done = await injector.wait_finished(timeout_s=5.0)
            assert done.state is InjectorState.FAULTED, done
            assert InjectorFault.OCCLUSION in done.faults, done
            (faulted,) = [e for e in events if e.kind == "faulted"]
            assert isinstance(faulted.data["faults"], tuple), faulted
            assert "occlusion" in faulted.data["faults"], faulted
            s = await injector.status()
            assert s.flow_ml_s == 0.0
            return True

        if not self.run(body):
            pytest.skip("this backend cannot be made to fault (trip_injector_fault)")
