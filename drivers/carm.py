"""C-arm contract: X-ray generator, flat-panel detector, positioner and collimator.

Everything is in the units its name says. Angles follow DICOM (PS3.3 C.8.7.5): the primary
angle is positive towards the patient's left (LAO), the secondary angle positive cranial; a
tube tilted 15° caudad is ``secondary_angle_deg = -15``.
"""

from __future__ import annotations

import asyncio
import enum
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ._bounded import Bounded
from ._validate import check_range as _check_range
from .errors import DeviceStateError
from .events import EventSource


class FocalSpot(enum.StrEnum):
    SMALL = "small"
    LARGE = "large"


FOCAL_SPOT_MM = {FocalSpot.SMALL: 0.6, FocalSpot.LARGE: 1.2}

#: The ionisation-chamber fields of a three-field bucky AEC (seen from the tube).
AEC_FIELDS = ("left", "centre", "right")


@dataclass(frozen=True, slots=True)
class AecMode:
    """Automatic exposure control: the selected chamber ``fields`` end the exposure when the
    panel reaches ``target_ei`` (IEC 62494-1 exposure index); the back-up timer ends it after
    ``backup_ms`` at the latest. The technique's own exposure time is then only nominal."""

    fields: tuple[str, ...] = ("centre",)
    target_ei: float = 250.0
    backup_ms: float = 1000.0

    def __post_init__(self) -> None:
        if not self.fields or any(f not in AEC_FIELDS for f in self.fields):
            raise ValueError(f"AEC fields {self.fields!r}: one or more of {AEC_FIELDS}")
        _check_range("target_ei", self.target_ei, 10.0, 10000.0)
        _check_range("backup_ms", self.backup_ms, 1.0, 6300.0)


@dataclass(frozen=True, slots=True)
class ExposureIndex:
    """IEC 62494-1 exposure index of a frame, its target, and the deviation index."""

    ei: float
    target: float

    @property
    def deviation(self) -> float:
        """DI = 10·log₁₀(EI/EI_T)."""
        return 10.0 * math.log10(max(self.ei, 1e-9) / self.target)


@dataclass(frozen=True, slots=True)
class Technique:
    """Generator technique for one exposure or one fluoroscopy pulse.

    Give either ``exposure_ms`` (with ``ma``) or ``mas``; the other is derived.
    """

    kv: float
    ma: float
    exposure_ms: float
    focal_spot: FocalSpot = FocalSpot.LARGE
    filtration_mm_al: float = 2.5
    filtration_mm_cu: float = 0.0
    aec: AecMode | None = None  # None: manual; else the AEC ends the exposure

    def __post_init__(self) -> None:
        _check_range("kv", self.kv, 40.0, 150.0)
        _check_range("ma", self.ma, 0.1, 1250.0)
        _check_range("exposure_ms", self.exposure_ms, 0.5, 6300.0)
        _check_range("filtration_mm_al", self.filtration_mm_al, 0.0, 10.0)
        _check_range("filtration_mm_cu", self.filtration_mm_cu, 0.0, 1.0)

    @property
    def mas(self) -> float:
        return self.ma * self.exposure_ms / 1000.0

    @classmethod
    def from_mas(
        cls,
        kv: float,
        mas: float,
        ma: float,
        focal_spot: FocalSpot = FocalSpot.LARGE,
        filtration_mm_al: float = 2.5,
        filtration_mm_cu: float = 0.0,
        aec: AecMode | None = None,
    ) -> Technique:
        return cls(
            kv, ma, mas / ma * 1000.0, focal_spot, filtration_mm_al, filtration_mm_cu, aec=aec
        )


@dataclass(frozen=True, slots=True)
class PositionerPose:
    """C-arm / tube geometry. ``sid_mm`` is source-to-image distance."""

    primary_angle_deg: float = 0.0
    secondary_angle_deg: float = 0.0
    sid_mm: float = 1150.0

    def __post_init__(self) -> None:
        _check_range("primary_angle_deg", self.primary_angle_deg, -180.0, 180.0)
        _check_range("secondary_angle_deg", self.secondary_angle_deg, -90.0, 90.0)
        _check_range("sid_mm", self.sid_mm, 700.0, 1800.0)


@dataclass(frozen=True, slots=True)
class CollimationField:
    """Collimated field size at the image receptor plane."""

    width_mm: float
    height_mm: float

    def __post_init__(self) -> None:
        _check_range("width_mm", self.width_mm, 10.0, 480.0)
        _check_range("height_mm", self.height_mm, 10.0, 480.0)


@dataclass(frozen=True, slots=True)
class Dose:
    """Dose indicators of one irradiation event (reference point per IEC 60601-2-43)."""

    reference_air_kerma_mgy: float
    entrance_air_kerma_mgy: float
    dap_gy_cm2: float


@dataclass(frozen=True, slots=True)
class Frame:
    """One detector readout.

    ``acquired_at_s`` is the device-reported moment of the exposure on the host monotonic
    clock; ``pixels`` are raw detector values (more radiation, higher value).
    """

    pixels: npt.NDArray[np.uint16]
    pixel_spacing_mm: float
    acquired_at_s: float
    technique: Technique
    pose: PositionerPose
    collimation: CollimationField
    dose: Dose
    bits_stored: int = 16
    exposure_index: ExposureIndex | None = None


@dataclass(frozen=True, slots=True)
class FluoroRequest:
    """A pulsed fluoroscopy run."""

    pulse_rate_hz: float
    duration_s: float
    technique: Technique

    def __post_init__(self) -> None:
        _check_range("pulse_rate_hz", self.pulse_rate_hz, 0.5, 30.0)
        _check_range("duration_s", self.duration_s, 0.1, 600.0)

    @property
    def n_pulses(self) -> int:
        return max(1, round(self.pulse_rate_hz * self.duration_s))


@dataclass(frozen=True, slots=True)
class FluoroRun:
    frames: tuple[Frame, ...]
    pulse_rate_hz: float
    started_at_s: float
    ended_at_s: float

    @property
    def frame_time_ms(self) -> float:
        return 1000.0 / self.pulse_rate_hz


@dataclass(frozen=True, slots=True)
class TomoRequest:
    """Linear tomosynthesis: a sweep of low-dose projections, reconstructed at given heights.

    ``technique`` is the whole sweep's technique: its mAs is shared among the projections.
    """

    layer_heights_mm: tuple[float, ...]  # above the table top
    technique: Technique
    sweep_deg: float = 30.0
    projections: int = 25

    def __post_init__(self) -> None:
        if not self.layer_heights_mm:
            raise ValueError("tomosynthesis needs at least one layer height")
        for h in self.layer_heights_mm:
            _check_range("layer_height_mm", h, 0.0, 400.0)
        _check_range("sweep_deg", self.sweep_deg, 5.0, 60.0)
        _check_range("projections", self.projections, 3, 101)


@dataclass(frozen=True, slots=True)
class TomoSeries:
    """Reconstructed layers, one frame per requested height (dose is the sweep's total,
    attributed to the first layer so sums over frames stay true)."""

    layers: tuple[Frame, ...]
    heights_mm: tuple[float, ...]
    sweep_deg: float
    projections: int
    started_at_s: float
    ended_at_s: float


#: Everything a flat panel's calibration corrects (offset, gain, defect pixels).
PANEL_CORRECTIONS: frozenset[str] = frozenset({"offset", "gain", "defects"})


@dataclass(frozen=True, slots=True)
class PanelMode:
    """One read-out mode of the detector: a calibration is only valid in the mode it was
    taken in (same size and binning)."""

    name: str  # "radiography", "fluoroscopy"
    rows: int
    cols: int
    binning: int
    pixel_spacing_mm: float


@dataclass(frozen=True, slots=True)
class CArmCapabilities:
    """What a C-arm declares about its own timing (its data sheet, not a measurement).

    ``exposure_latency_s``: from the exposure command (hand switch) to beam-on with the anode
    prepared; ``readout_s``: from the end of a radiographic exposure to the frame being
    available. ``timed_trigger``: the C-arm takes ``expose(at_s=T)`` and fires on its own timer
    so the beam comes on at ``T``; without it a scheduler sends the command
    ``exposure_latency_s`` early. ``max_sync_s``: for a device on a link, the largest clock
    offset uncertainty (wall seconds) it accepts with a timed exposure.
    """

    exposure_latency_s: float = 0.0
    readout_s: float = 0.0
    timed_trigger: bool = False
    max_sync_s: float = 0.0

    def __post_init__(self) -> None:
        _check_range("exposure_latency_s", self.exposure_latency_s, 0.0, 5.0)
        _check_range("readout_s", self.readout_s, 0.0, 30.0)
        _check_range("max_sync_s", self.max_sync_s, 0.0, 1.0)


#: Fault codes of a timed exposure the device refused or dropped before beam-on (no exposure
#: was made): the time point already passed, the clock sync is missing or too uncertain, the
#: host fell silent before the time point, or it was cancelled (``beam_off``).
TRIGGER_PAST = "trigger_past"
TRIGGER_SYNC = "trigger_sync"
TRIGGER_HOST_SILENT = "trigger_host_silent"
TRIGGER_CANCELLED = "trigger_cancelled"
TIMED_NOT_FIRED = frozenset({TRIGGER_PAST, TRIGGER_SYNC, TRIGGER_HOST_SILENT, TRIGGER_CANCELLED})


@dataclass(frozen=True, slots=True)
class CArmStatus:
    ready: bool
    beam_on: bool
    technique: Technique | None
    pose: PositionerPose
    collimation: CollimationField
    moving: bool
    fluoro_time_s: float = 0.0
    cumulative_reference_air_kerma_mgy: float = 0.0
    cumulative_dap_gy_cm2: float = 0.0
    faults: tuple[str, ...] = field(default_factory=tuple)
    #: a timed exposure is armed (waiting for its time point)
    armed: bool = False


class CArm(Bounded, EventSource, ABC):
    """The device side of a C-arm: generator, detector, positioner, collimator.

    Public methods bound every await; drivers implement the ``_``-prefixed hooks.
    ``expose`` and ``fluoro`` are fire-once: they are never retried by a driver, and a
    timeout means the outcome is unknown (query :meth:`status`).
    """

    #: Positioner speed used to bound motion waits when the caller gives no timeout.
    rotation_speed_deg_s: float = 10.0
    #: What the panel corrects on board before delivering a frame (a subset of
    #: PANEL_CORRECTIONS); the host image chain does the rest. A C-arm that declares
    #: nothing is taken to deliver corrected frames, as vendor panels do.
    panel_corrections: frozenset[str] = PANEL_CORRECTIONS
    #: True if calibration frames need no one to clear the beam (a simulator): an exam may
    #: then calibrate the panel itself when the room has no calibration.
    unattended_calibration: bool = False

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    async def set_technique(self, technique: Technique, *, timeout_s: float = 2.0) -> None:
        await self._bounded("set_technique", timeout_s, self._set_technique(technique))

    async def move_positioner(
        self, pose: PositionerPose, *, timeout_s: float | None = None
    ) -> None:
        if timeout_s is None:
            current = (await self.status()).pose
            sweep = max(
                abs(pose.primary_angle_deg - current.primary_angle_deg),
                abs(pose.secondary_angle_deg - current.secondary_angle_deg),
            )
            timeout_s = 2.0 * sweep / self.rotation_speed_deg_s + 5.0
        await self._bounded("move_positioner", timeout_s, self._move_positioner(pose))

    async def set_collimation(
        self, collimation: CollimationField, *, timeout_s: float = 3.0
    ) -> None:
        await self._bounded("set_collimation", timeout_s, self._set_collimation(collimation))

    async def capabilities(self, *, timeout_s: float = 1.0) -> CArmCapabilities:
        """The C-arm's declared latencies and whether it takes timed exposures."""
        return await self._bounded("capabilities", timeout_s, self._capabilities())

    async def timed_trigger_ready(self, *, timeout_s: float = 1.0) -> str | None:
        """Get ready for ``expose(at_s=...)`` (a device on a link re-measures its clock offset
        when stale); returns why a timed exposure cannot be used now, or None when it can."""
        return await self._bounded("timed_trigger_ready", timeout_s, self._timed_trigger_ready())

    async def expose(self, *, at_s: float | None = None, timeout_s: float | None = None) -> Frame:
        """Take one radiographic exposure with the current technique.

        ``at_s`` (host loop time): a timed exposure, for a C-arm whose capabilities say
        ``timed_trigger``. The C-arm arms, and its own timer brings the beam on at ``at_s``; it
        refuses (:class:`DeviceFault` with a code in :data:`TIMED_NOT_FIRED`, no exposure made)
        a time point already too close or past, or a clock it cannot trust. ``beam_off``
        cancels an armed exposure before beam-on. Fire-once like any exposure.
        """
        if timeout_s is None:
            technique = (await self.status()).technique
            exposure_s = technique.exposure_ms / 1000.0 if technique else 1.0
            timeout_s = exposure_s + 3.0  # prepare + readout margin
            if at_s is not None:
                timeout_s += max(0.0, at_s - asyncio.get_running_loop().time())
        if at_s is None:
            return await self._bounded("expose", timeout_s, self._expose())
        return await self._bounded("expose", timeout_s, self._expose_at(at_s))

    async def fluoro(self, request: FluoroRequest, *, timeout_s: float | None = None) -> FluoroRun:
        if timeout_s is None:
            timeout_s = request.duration_s * 1.5 + 3.0
        return await self._bounded("fluoro", timeout_s, self._fluoro(request))

    async def tomosynthesis(
        self, request: TomoRequest, *, timeout_s: float | None = None
    ) -> TomoSeries:
        """Fire-once like an exposure: the sweep is never repeated after an unknown outcome."""
        if timeout_s is None:
            sweep_s = request.technique.exposure_ms / 1000.0 + request.projections * 0.1
            timeout_s = 2.0 * sweep_s + 10.0  # reconstruction margin
        return await self._bounded("tomosynthesis", timeout_s, self._tomosynthesis(request))

    async def beam_off(self, *, timeout_s: float = 0.1) -> None:
        """Safe state: terminate any irradiation. Idempotent."""
        await self._bounded("beam_off", timeout_s, self._beam_off())

    async def status(self, *, timeout_s: float = 1.0) -> CArmStatus:
        return await self._bounded("status", timeout_s, self._status())

    async def safe_state(self, *, timeout_s: float = 0.1) -> None:
        await self.beam_off(timeout_s=timeout_s)

    def panel_modes(self) -> tuple[PanelMode, ...]:
        """The detector's read-out modes (empty: not declared)."""
        return ()

    async def calibration_frames(
        self, mode: str, kind: str, count: int, *, timeout_s: float | None = None
    ) -> tuple[Frame, ...]:
        """``count`` uncorrected frames in read-out ``mode``: ``kind`` "dark" (no beam) or
        "flat" (open field, nothing in the beam, at a technique the device chooses)."""
        if kind not in ("dark", "flat"):
            raise ValueError(f"calibration frames are dark or flat, not {kind!r}")
        if timeout_s is None:
            timeout_s = 5.0 + 1.0 * count
        return await self._bounded(
            "calibration_frames", timeout_s, self._calibration_frames(mode, kind, count)
        )

    @abstractmethod
    async def _set_technique(self, technique: Technique) -> None: ...

    @abstractmethod
    async def _move_positioner(self, pose: PositionerPose) -> None: ...

    @abstractmethod
    async def _set_collimation(self, collimation: CollimationField) -> None: ...

    @abstractmethod
    async def _expose(self) -> Frame: ...

    async def _capabilities(self) -> CArmCapabilities:
        """Nothing declared: no latency compensation, no timed trigger."""
        return CArmCapabilities()

    async def _timed_trigger_ready(self) -> str | None:
        caps = await self._capabilities()
        return None if caps.timed_trigger else "this C-arm has no timed trigger"

    async def _expose_at(self, at_s: float) -> Frame:
        raise DeviceStateError(self.name, "expose", "this C-arm has no timed trigger")

    @abstractmethod
    async def _fluoro(self, request: FluoroRequest) -> FluoroRun: ...

    async def _tomosynthesis(self, request: TomoRequest) -> TomoSeries:
        raise DeviceStateError(self.name, "tomosynthesis", "this C-arm has no tomosynthesis")

    async def _calibration_frames(self, mode: str, kind: str, count: int) -> tuple[Frame, ...]:
        raise DeviceStateError(self.name, "calibration_frames", "this C-arm cannot calibrate")

    @abstractmethod
    async def _beam_off(self) -> None: ...

    @abstractmethod
    async def _status(self) -> CArmStatus: ...
