"""The device conformance suite for backends and vendor drivers (docs/vendor-drivers.md).

Subclass :class:`DeviceConformance` in your driver's tests, set ``roles`` and implement
``open_devices(clock)``; every check runs on a fresh virtual-time loop.
"""

from drivers.testing.conformance import DeviceConformance, OpenDevices

__all__ = ["DeviceConformance", "OpenDevices"]
