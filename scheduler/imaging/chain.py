"""The host image chain for one room: what a stored image's frames go through.

* every frame: offset, gain and defect-pixel correction (what the panel did not do on
  board), with the room's calibration for the frame's read-out mode;
* a fluoroscopy run: the recursive temporal filter over its frames, in order; its last
  filtered frame is the last-image-hold;
* the display mapping (log, window, unsharp mask) is applied where the image is written
  (:mod:`scheduler.outputs.dicom_pixels`): the record keeps linear, corrected frames.

Tomosynthesis layers are left as delivered: the device reconstructs them from projections
it corrected itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from drivers import CArm, DeviceError, Frame
from drivers.carm import PANEL_CORRECTIONS
from drivers.config import ConfigError

from ..outputs.dicom import HELD_NOTE
from ..records import CaptureRecord
from ..room import Room
from . import store
from .acquire import acquire_calibration
from .calibration import RoomCalibration
from .correct import FrameCorrector
from .temporal import RecursiveFilter

__all__ = ["HELD_NOTE", "DevelopedImage", "HostImageChain", "ImageChainOptions"]

#: Recursive filter weight of fluoroscopy runs without the room option: noise variance
#: falls to α/(2−α) = 1/3 of a frame's on static anatomy.
DEFAULT_TEMPORAL_ALPHA = 0.5


@dataclass(frozen=True)
class ImageChainOptions:
    """The room options of the image chain (``options:`` in the room file)."""

    #: recursive filter weight for fluoroscopy (1 = no filtering)
    temporal_alpha: float = DEFAULT_TEMPORAL_ALPHA
    #: motion-adaptive filtering: counts of change above which a pixel is not averaged
    motion_threshold: float | None = None
    #: also store the linear "for processing" image of each acquisition
    for_processing: bool = False
    #: store each fluoroscopy run's last-image-hold as an image of its own
    store_last_image_hold: bool = False

    @classmethod
    def of(cls, room: Room) -> ImageChainOptions:
        o = room.options

        def number(key: str, default: float | None) -> float | None:
            v = o.get(key, default)
            if v is None:
                return None
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise ConfigError("room", None, f"options.{key}", f"must be a number: {v!r}")
            return float(v)

        def flag(key: str) -> bool:
            v = o.get(key, False)
            if not isinstance(v, bool):
                raise ConfigError("room", None, f"options.{key}", f"must be true or false: {v!r}")
            return v

        alpha = number("temporal_alpha", DEFAULT_TEMPORAL_ALPHA)
        assert alpha is not None
        if not 0.0 < alpha <= 1.0:
            raise ConfigError(
                "room", None, "options.temporal_alpha", f"must be in (0, 1], not {alpha:g}"
            )
        return cls(
            alpha,
            number("motion_threshold", None),
            flag("for_processing"),
            flag("store_last_image_hold"),
        )


@dataclass(frozen=True)
class DevelopedImage:
    """One acquisition after the chain: the image to present, and what else to store."""

    presentation: CaptureRecord
    for_processing: CaptureRecord | None
    held: CaptureRecord | None


class HostImageChain:
    """The chain of one room and C-arm. Build it with :meth:`for_room` (which refuses a
    stale or mismatched calibration), :meth:`prepare` it once, then :meth:`develop`."""

    def __init__(
        self,
        options: ImageChainOptions,
        needed: frozenset[str],
        calibration: RoomCalibration | None,
        self_calibrate: Callable[[], asyncio.Future[RoomCalibration]] | None = None,
    ) -> None:
        self.options = options
        self.needed = needed
        self.calibration = calibration
        self._self_calibrate = self_calibrate
        self._pending: asyncio.Future[RoomCalibration] | None = None
        #: why the chain's own calibration failed (its images are stored uncorrected)
        self.failure: str | None = None
        self._correctors: dict[tuple[int, int, float], FrameCorrector | None] = {}

    @classmethod
    def for_room(cls, room: Room, carm: CArm, now: dt.datetime | None = None) -> HostImageChain:
        """The room's chain; ConfigError (one line) if its calibration is stale, mismatched,
        unreadable or missing where the C-arm cannot calibrate itself."""
        options = ImageChainOptions.of(room)
        needed = PANEL_CORRECTIONS - carm.panel_corrections
        if not needed:
            return cls(options, needed, None)
        folder = store.calibration_dir(room)
        calibration = store.load(folder)
        now = now or dt.datetime.now(dt.UTC)
        if calibration is not None:
            store.check(calibration, folder, carm.panel_modes(), store.max_age_h(room), now)
            return cls(options, needed, calibration)
        if not carm.unattended_calibration:
            raise ConfigError(
                folder / store.MANIFEST,
                None,
                "",
                f"no calibration for {carm.name}'s raw panel (run fluoroctl calibrate ROOM)",
            )

        def take() -> asyncio.Future[RoomCalibration]:
            return asyncio.ensure_future(acquire_calibration(carm, now))

        chain = cls(options, needed, None, take)
        chain.start()
        return chain

    @property
    def ready(self) -> bool:
        return not self.needed or self.calibration is not None

    def start(self) -> None:
        """Start calibrating (a panel that calibrates unattended) if a loop runs: the
        frames are made while the exam prepares, not when its first image is stored."""
        if self.ready or self._self_calibrate is None or self._pending is not None:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self._pending = self._self_calibrate()
        # an exam refused or ended before its first image never awaits it
        self._pending.add_done_callback(lambda f: f.cancelled() or f.exception())

    async def prepare(self) -> None:
        """Wait for the chain's own calibration (a simulator's panel). If it cannot be
        taken, frames are stored as delivered, with a note: nothing acquired is lost."""
        if self.ready or self._self_calibrate is None:
            return
        self.start()
        if self._pending is None:
            return
        try:
            self.calibration = await self._pending
        except (DeviceError, ValueError) as exc:
            self.failure = f"the panel could not be calibrated: {exc}"
            self._self_calibrate = None

    def corrector(self, frame: Frame) -> FrameCorrector | None:
        """The corrector of ``frame``'s read-out mode (None: nothing to do or no calibration)."""
        if not self.needed or self.calibration is None:
            return None
        rows, cols = frame.pixels.shape
        key = (int(rows), int(cols), frame.pixel_spacing_mm)
        if key not in self._correctors:
            cal = self.calibration.for_shape(*key)
            self._correctors[key] = None if cal is None else FrameCorrector(cal, self.needed)
        return self._correctors[key]

    def correct(self, frame: Frame) -> Frame:
        c = self.corrector(frame)
        return frame if c is None else dataclasses.replace(frame, pixels=c.correct(frame.pixels))

    def develop(self, record: CaptureRecord) -> DevelopedImage:
        """The record with corrected (and, for fluoroscopy, temporally filtered) frames."""
        if record.tomo is not None:
            return DevelopedImage(record, None, None)
        corrected = tuple(self.correct(f) for f in record.frames)
        notes = record.notes
        if self.needed and any(self.corrector(f) is None for f in record.frames):
            shape = "x".join(str(n) for n in record.frames[0].pixels.shape)
            notes = (*notes, f"uncorrected: no calibration for {shape} frames")
        held = None
        shown = corrected
        if record.kind == "fluoro" and self.options.temporal_alpha < 1.0:
            f = RecursiveFilter(self.options.temporal_alpha, self.options.motion_threshold)
            shown = tuple(dataclasses.replace(fr, pixels=f(fr.pixels)) for fr in corrected)
        if record.kind == "fluoro" and self.options.store_last_image_hold:
            held = dataclasses.replace(
                record,
                step_id=f"{record.step_id}-lih",
                label=f"{record.label} last image hold",
                kind="radiograph",
                frames=(shown[-1],),
                pulse_rate_hz=None,
                notes=(*notes, HELD_NOTE),
            )
        presentation = dataclasses.replace(record, frames=shown, notes=notes)
        processing = None
        if self.options.for_processing:
            processing = dataclasses.replace(
                record, step_id=f"{record.step_id}-proc", frames=corrected, notes=notes
            )
        return DevelopedImage(presentation, processing, held)
