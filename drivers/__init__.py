"""Device contracts, value types, clocks and typed errors for fluoroctl.

The scheduler knows only what is exported here; simulators and vendor drivers implement it.
"""

from .carm import (
    FOCAL_SPOT_MM,
    CArm,
    CArmStatus,
    CollimationField,
    Dose,
    FluoroRequest,
    FluoroRun,
    FocalSpot,
    Frame,
    PositionerPose,
    Technique,
    TomoRequest,
    TomoSeries,
)
from .clock import Clock, ScaledTimeEventLoop, VirtualTimeEventLoop, new_event_loop
from .errors import (
    AmbiguousCommand,
    CommandRejected,
    DeviceBusy,
    DeviceError,
    DeviceFault,
    DeviceLost,
    DeviceStateError,
    DeviceTimeout,
)
from .events import DeviceEvent, EventListener, EventSource
from .injector import (
    KPA_PER_PSI,
    InjectionPhase,
    InjectionProgram,
    Injector,
    InjectorFault,
    InjectorState,
    InjectorStatus,
)
from .table import Table, TablePosition, TableStatus

__all__ = [
    "FOCAL_SPOT_MM",
    "KPA_PER_PSI",
    "AmbiguousCommand",
    "CArm",
    "CArmStatus",
    "Clock",
    "CollimationField",
    "CommandRejected",
    "DeviceBusy",
    "DeviceError",
    "DeviceEvent",
    "DeviceFault",
    "DeviceLost",
    "DeviceStateError",
    "DeviceTimeout",
    "Dose",
    "EventListener",
    "EventSource",
    "FluoroRequest",
    "FluoroRun",
    "FocalSpot",
    "Frame",
    "InjectionPhase",
    "InjectionProgram",
    "Injector",
    "InjectorFault",
    "InjectorState",
    "InjectorStatus",
    "PositionerPose",
    "ScaledTimeEventLoop",
    "Table",
    "TablePosition",
    "TableStatus",
    "Technique",
    "TomoRequest",
    "TomoSeries",
    "VirtualTimeEventLoop",
    "new_event_loop",
]
