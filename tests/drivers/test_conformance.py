"""The conformance suite run against the mock, the in-process simulator and the ACME template."""

from __future__ import annotations

import asyncio

import pytest

from drivers import Clock, DeviceTimeout, InjectorFault, InjectorStatus
from drivers.backends import DeviceSet, RoomDevices, RoomRequest
from drivers.mock import CallLog, MockInjector, open_mock_room
from drivers.testing.conformance import DeviceConformance
from hardware_sim.room import open_sim_room

from .conftest import ACME_SRC

ALL = ("carm", "table", "injector")


class TestMock(DeviceConformance):
    emits_events = False

    @staticmethod
    async def open_devices(clock: Clock) -> DeviceSet | RoomDevices:
        return await open_mock_room(RoomRequest({r: f"mock://{r}" for r in ALL}, clock))


class TestSim(DeviceConformance):
    @staticmethod
    async def open_devices(clock: Clock) -> DeviceSet | RoomDevices:
        return await open_sim_room(RoomRequest({r: f"sim://{r}" for r in ALL}, clock))

    async def trip_injector_fault(
        self, devices: DeviceSet | RoomDevices, fault: InjectorFault
    ) -> bool:
        devices.info["sim_room"].injector.trip(fault)
        return True


class TestAcme(DeviceConformance):
    roles = ("injector",)

    @staticmethod
    async def open_devices(clock: Clock) -> DeviceSet | RoomDevices:
        import sys

        if str(ACME_SRC) not in sys.path:
            sys.path.insert(0, str(ACME_SRC))
        from acme_injector import open_acme_room

        return await open_acme_room(RoomRequest({"injector": "acme://injector"}, clock))

    async def trip_injector_fault(
        self, devices: DeviceSet | RoomDevices, fault: InjectorFault
    ) -> bool:
        devices.injector._device.trip(fault)  # type: ignore[union-attr]
        return True


# -- the suite catches broken drivers --------------------------------------------------------
class RetryingInjector(MockInjector):
    """Broken: re-sends start after a timeout (must never happen: fire-once)."""

    async def start(self, *, timeout_s: float = 2.0) -> InjectorStatus:
        try:
            return await super().start(timeout_s=timeout_s)
        except DeviceTimeout:
            return await super().start(timeout_s=timeout_s)


class SlowStoppingInjector(MockInjector):
    """Broken: its safe state takes a second (the contract allows 0.1 s)."""

    async def _stop(self) -> None:
        await asyncio.sleep(1.0)
        await super()._stop()


def broken(injector: type[MockInjector]) -> type[DeviceConformance]:
    class Broken(DeviceConformance):
        roles = ("injector",)

        @staticmethod
        async def open_devices(clock: Clock) -> DeviceSet | RoomDevices:
            return RoomDevices(injector=injector("injector", clock, CallLog()))

    return Broken


def test_the_suite_fails_a_driver_that_resends_start() -> None:
    suite = broken(RetryingInjector)()
    with pytest.raises(AssertionError, match="start sent 2 times"):
        suite.test_fire_once_commands_are_never_resent("injector", "start", "_start")


def test_the_suite_fails_a_driver_whose_safe_state_is_slow() -> None:
    suite = broken(SlowStoppingInjector)()
    with pytest.raises(DeviceTimeout, match="stop"):
        suite.test_safe_states_are_reached_within_their_bounds()
