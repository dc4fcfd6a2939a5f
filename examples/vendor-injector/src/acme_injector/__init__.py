"""ACME power injector: a template fluoroctl vendor driver (simulated device)."""

from .backend import open_acme_room
from .driver import AcmeDevice, AcmeInjector

__all__ = ["AcmeDevice", "AcmeInjector", "open_acme_room"]
