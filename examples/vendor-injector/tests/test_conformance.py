"""fluoroctl's conformance suite against the ACME injector (run: pytest tests/)."""

from __future__ import annotations

from acme_injector import AcmeInjector, open_acme_room

from drivers import Clock, InjectorFault
from drivers.backends import DeviceSet, RoomDevices, RoomRequest
from drivers.testing.conformance import DeviceConformance


class TestAcmeInjector(DeviceConformance):
    roles = ("injector",)

    @staticmethod
    async def open_devices(clock: Clock) -> DeviceSet | RoomDevices:
        return await open_acme_room(RoomRequest({"injector": "acme://injector"}, clock))

    async def trip_injector_fault(
        self, devices: DeviceSet | RoomDevices, fault: InjectorFault
    ) -> bool:
        assert isinstance(devices.injector, AcmeInjector)
        devices.injector._device.trip(fault)
        return True
