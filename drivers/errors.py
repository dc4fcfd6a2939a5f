"""Typed device errors: every failure says which device, which operation and what happened."""

from __future__ import annotations


class DeviceError(Exception):
    """Base of every error a device driver raises."""

    def __init__(self, device: str, operation: str, detail: str) -> None:
        super().__init__(f"{device}: {operation}: {detail}")
        self.device = device
        self.operation = operation
        self.detail = detail


class DeviceTimeout(DeviceError):
    """The device did not complete ``operation`` within its bound.

    For fire-once operations (exposure, injection start) the outcome is *unknown*: callers
    must query state, never re-send.
    """

    def __init__(self, device: str, operation: str, timeout_s: float) -> None:
        super().__init__(device, operation, f"no completion within {timeout_s:.3g} s")
        self.timeout_s = timeout_s


class DeviceFault(DeviceError):
    """The device reported a fault (over-pressure, generator fault, stall, ...)."""

    def __init__(self, device: str, operation: str, fault: str, detail: str = "") -> None:
        super().__init__(device, operation, f"fault {fault}" + (f": {detail}" if detail else ""))
        self.fault = fault


class DeviceStateError(DeviceError):
    """The command is not valid in the device's current state (e.g. start while not armed)."""


class DeviceLost(DeviceError):
    """The link to the device is gone (heartbeat lost, port closed)."""
