"""Reference drivers: the device contracts spoken over the wire protocol on real links."""

from ._channel import Channel
from ._ops import Operations
from .carm import RemoteCArm
from .effects import RemoteEffects
from .injector import RemoteInjector
from .room import DEFAULT_DEVICE_IDS, open_wire_room, split_device_id
from .table import RemoteTable

__all__ = [
    "DEFAULT_DEVICE_IDS",
    "Channel",
    "Operations",
    "RemoteCArm",
    "RemoteEffects",
    "RemoteInjector",
    "RemoteTable",
    "open_wire_room",
    "split_device_id",
]
