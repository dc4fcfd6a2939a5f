"""Test helpers for driver authors: the conformance suite every backend should pass."""

from .conformance import DeviceConformance, OpenDevices

__all__ = ["DeviceConformance", "OpenDevices"]
