"""Simulated C-arm: frames are projections of the simulated patient at the moment of exposure.

The generator holds its own hard limits (:mod:`hardware_sim.limits`): a technique, a
fluoroscopy run or a sweep beyond them is refused (:class:`DeviceLimitExceeded`) before
anything is set or the beam comes on, whatever the host says.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from drivers import (
    FOCAL_SPOT_MM,
    CArm,
    CArmStatus,
    Clock,
    CollimationField,
    DeviceEvent,
    DeviceFault,
    DeviceStateError,
    Dose,
    FluoroRequest,
    FluoroRun,
    Frame,
    PositionerPose,
    Technique,
    TomoRequest,
    TomoSeries,
)
from drivers.carm import (
    PANEL_CORRECTIONS,
    TRIGGER_CANCELLED,
    TRIGGER_HOST_SILENT,
    TRIGGER_PAST,
    CArmCapabilities,
    PanelMode,
)
from drivers.timer import SPIN_S, sleep_until_precise

from .aec import TARGET_EI, AecUnit, frame_exposure_index, with_exposure_index
from .limits import GeneratorLimits, check_fluoro, check_technique
from .panel import (
    PANEL_MODES,
    PEDESTAL_COUNTS,
    calibration_images,
    corrected_on_board,
)
from .patient import SimPatient
from .physics import DetectorModel, ImagingChain, RenderedImage, TechniqueParams, ViewGeometry
from .table import SimTable

SWEEP_S_PER_PROJECTION = 0.1  # a linear sweep at 10 projections per second
EXPOSURE_LATENCY_S = 0.02  # hand switch to beam-on with the anode already prepared
READOUT_S = 0.15  # flat-panel readout after a radiographic exposure
#: The largest host clock-offset uncertainty a timed exposure is accepted with: it is the
#: beam-on error the host cannot see, so it is kept below the ±2 ms trigger target.
MAX_SYNC_S = 0.0015


class SimCArm(CArm):
    rotation_speed_deg_s = 10.0

    def __init__(
        self,
        name: str,
        clock: Clock,
        patient: SimPatient,
        table: SimTable,
        seed: int = 0,
        limits: GeneratorLimits | None = None,
        panel: str = "raw",
        timed_trigger: bool = True,
    ) -> None:
        super().__init__(name)
        if panel not in PANEL_MODES:
            raise ValueError(f"panel must be one of {', '.join(PANEL_MODES)}, not {panel!r}")
        #: a raw panel leaves every correction to the host's image chain
        self.panel_corrections = PANEL_CORRECTIONS if panel == "corrected" else frozenset()
        self.unattended_calibration = True  # nothing real to clear from the beam
        #: whether the generator takes timed exposures (a room option can model one that
        #: does not: the scheduler then sends the command early by the exposure latency)
        self.timed_trigger = timed_trigger
        #: the generator's own hard limits (its configuration, not the host's)
        self.limits = limits or GeneratorLimits()
        self._clock = clock
        self._patient = patient
        self._table = table
        self._technique: Technique | None = None
        self._pose = PositionerPose()
        self._collimation = CollimationField(350.0, 430.0)
        self._beam_on = False
        self._moving = False
        self._fluoro_time_s = 0.0
        self._cum_rak_mgy = 0.0
        self._cum_dap = 0.0
        self._generator_faults_pending = 0
        self._frames_to_drop = 0
        #: the generator's automatic exposure control (``aec.fail_next()`` injects its fault)
        self.aec = AecUnit()
        #: called with every acquisition result before it is announced (the detector's
        #: image memory: the simulated room persists it so a restarted controller finds it)
        self.on_acquired: Callable[[str, object], None] | None = None
        #: asked when an armed exposure fires: a reason not to (the wire service says the host
        #: fell silent), or None to fire
        self.fire_guard: Callable[[], str | None] | None = None
        self._armed: asyncio.Future[None] | None = None
        self._radiography = ImagingChain(patient.phantom, DetectorModel(seed=seed), seed=seed)
        # Fluoroscopy reads the panel 2×2 binned, as real R/F panels do for frame rate [S29].
        self._fluoroscopy = ImagingChain(
            patient.phantom,
            DetectorModel(rows=512, cols=512, pixel_mm=0.834, seed=seed),
            seed=seed + 1,
        )

    async def warm_up(self, technique: Technique) -> None:
        """Build what the first exposure would build (offset maps, spectra, the current view).

        For a room on real links (``sim serve``): there the simulator's computing time is
        wall time, which a time-scaled rehearsal multiplies. No dose is recorded and no event
        published; the panel is not irradiated.
        """
        geometry, params, conc, volumes, t_model = self._scene(technique)

        def build(chain: ImagingChain) -> None:
            image = chain.render(geometry, params, conc, volumes, time_s=t_model)
            pixels = self._on_board(image.pixels, chain)
            # the exposure index's tables (detector response to this spectrum)
            frame_exposure_index(chain.detector, pixels, PEDESTAL_COUNTS, TARGET_EI)

        # both chains at once: their numpy work releases the GIL, and a second core is idle
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(loop.run_in_executor(None, build, c) for c in (self._radiography, self._fluoroscopy))
        )

    # -- fault-injection hook ------------------------------------------------------------
    def fail_next_exposures(self, count: int = 1) -> None:
        """The generator faults before beam-on on the next ``count`` acquisitions."""
        self._generator_faults_pending += count

    def drop_next_frames(self, count: int = 1) -> None:
        """The detector loses the next ``count`` frames *after* they were exposed."""
        self._frames_to_drop += count

    def _generator_check(self, operation: str) -> None:
        if self._generator_faults_pending:
            self._generator_faults_pending -= 1
            self._emit("generator_fault", operation=operation)
            raise DeviceFault(self.name, operation, "generator", "exposure aborted before beam-on")

    def check_request(
        self, operation: str, request: Technique | FluoroRequest | TomoRequest
    ) -> None:
        """Raise :class:`DeviceLimitExceeded` if ``request`` is beyond the generator's limits.

        What the device checks before it accepts an irradiation; a wire service calls it to
        refuse at once (an INTERLOCK reply) instead of failing the operation later.
        """
        if isinstance(request, FluoroRequest):
            check_fluoro(self.limits, request, self.name)
        elif isinstance(request, TomoRequest):
            check_technique(self.limits, request.technique, self.name, operation)
        else:
            check_technique(self.limits, request, self.name, operation)

    def _acquired(self, kind: str, result: object) -> None:
        if self.on_acquired is not None:
            self.on_acquired(kind, result)

    # -- contract --------------------------------------------------------------------------
    async def _set_technique(self, technique: Technique) -> None:
        self.check_request("set_technique", technique)
        self._technique = technique
        self._emit("technique_set", kv=technique.kv, mas=technique.mas)

    async def _move_positioner(self, pose: PositionerPose) -> None:
        sweep = max(
            abs(pose.primary_angle_deg - self._pose.primary_angle_deg),
            abs(pose.secondary_angle_deg - self._pose.secondary_angle_deg),
        )
        self._moving = True
        try:
            await asyncio.sleep(sweep / self.rotation_speed_deg_s + 0.1)
            self._pose = pose
        finally:
            self._moving = False
        self._emit(
            "positioner_in_position",
            secondary_angle_deg=pose.secondary_angle_deg,
            sid_mm=pose.sid_mm,
        )

    async def _set_collimation(self, collimation: CollimationField) -> None:
        self._collimation = collimation
        await asyncio.sleep(0.2)
        self._emit(
            "collimation_set", width_mm=collimation.width_mm, height_mm=collimation.height_mm
        )

    async def _capabilities(self) -> CArmCapabilities:
        return CArmCapabilities(
            exposure_latency_s=EXPOSURE_LATENCY_S,
            readout_s=READOUT_S,
            timed_trigger=self.timed_trigger,
            max_sync_s=MAX_SYNC_S,
        )

    async def _expose(self) -> Frame:
        technique = self._ready_technique("expose")
        self.check_request("expose", technique)
        await asyncio.sleep(EXPOSURE_LATENCY_S)
        self._generator_check("expose")
        return await self._radiograph(technique)

    async def _expose_at(self, at_s: float) -> Frame:
        """Arm now, let the generator's own timer press the hand switch at ``at_s`` minus the
        exposure latency, so the beam comes on at ``at_s``. ``beam_off`` (and so a host loss)
        disarms it; the interlocks and :attr:`fire_guard` are checked again when it fires."""
        if not self.timed_trigger:
            return await super()._expose_at(at_s)
        technique = self._ready_technique("expose")
        self.check_request("expose", technique)
        switch_at = at_s - EXPOSURE_LATENCY_S
        if switch_at < self._clock.now():
            late_ms = (self._clock.now() - switch_at) * 1000.0
            raise DeviceFault(
                self.name,
                "expose",
                TRIGGER_PAST,
                f"time point {late_ms:.1f} ms too close or past (exposure latency "
                f"{EXPOSURE_LATENCY_S * 1000:g} ms): not armed",
            )
        if self._armed is not None:
            raise DeviceStateError(self.name, "expose", "a timed exposure is already armed")
        armed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._armed = armed  # not an event: the exam's journal stays line for line as before
        try:
            await self._wait_until(armed, switch_at)
            if not armed.done():
                refusal = self.fire_guard() if self.fire_guard is not None else None
                if refusal is not None:
                    self._emit("exposure_disarmed", reason=refusal)
                    raise DeviceFault(self.name, "expose", TRIGGER_HOST_SILENT, refusal)
                technique = self._ready_technique("expose")
                self._generator_check("expose")
                # the prepared generator's latency; a beam_off meanwhile still stops it
                await self._wait_until(armed, at_s)
        finally:
            self._armed = None
        if armed.done():
            raise DeviceFault(
                self.name, "expose", TRIGGER_CANCELLED, "timed exposure cancelled before beam-on"
            )
        return await self._radiograph(technique)

    async def _wait_until(self, armed: asyncio.Future[None], t: float) -> None:
        """Wait until loop time ``t`` (precisely), or until disarmed (``armed`` done)."""
        delay = t - 2 * SPIN_S * self._clock.time_scale - self._clock.now()
        if delay > 0 and not armed.done():
            await asyncio.wait((armed,), timeout=delay)
        if not armed.done():
            await sleep_until_precise(self._clock, t)

    async def _radiograph(self, technique: Technique) -> Frame:
        """Beam on now for the technique's exposure time (the AEC's when it has one), then
        the readout."""
        loop = asyncio.get_running_loop()
        self._beam_on = True  # from here: the AEC measures while the beam is on
        try:
            technique = await self._aec_end(technique)
            frame = await self._render(technique, self._radiography)
            # off the loop like the rendering: on real links a first exposure's tables would
            # otherwise hold the device's heartbeats back for over a second
            frame = await loop.run_in_executor(None, self._indexed, frame)
            await asyncio.sleep(technique.exposure_ms / 1000.0)
        finally:
            self._beam_on = False
        if self._frames_to_drop:
            self._frames_to_drop -= 1
            self._emit(
                "frames_dropped",
                frames=1,
                reference_air_kerma_mgy=frame.dose.reference_air_kerma_mgy,
            )
            raise DeviceFault(
                self.name, "expose", "dropped_frame", "exposure made; the detector lost the frame"
            )
        self._acquired("radiograph", frame)
        self._emit(
            "exposure",
            acquired_at_s=frame.acquired_at_s,
            mas=technique.mas,
            reference_air_kerma_mgy=frame.dose.reference_air_kerma_mgy,
        )
        await asyncio.sleep(READOUT_S)
        return frame

    async def _fluoro(self, request: FluoroRequest) -> FluoroRun:
        self._ready_technique("fluoro")
        self.check_request("fluoro", request)
        self._generator_check("fluoro")
        technique = request.technique
        period = 1.0 / request.pulse_rate_hz
        started = self._clock.now() + EXPOSURE_LATENCY_S
        frames: list[Frame] = []
        dropped = 0
        self._beam_on = True
        self._emit("fluoro_started", pulse_rate_hz=request.pulse_rate_hz)
        try:
            for k in range(request.n_pulses):
                await self._clock.sleep_until(started + k * period)
                if not self._beam_on:  # beam_off ended the run: keep what was acquired
                    break
                frame = await self._render(technique, self._fluoroscopy)
                # the fluoroscopy timer counts the pedal time (21 CFR 1020.30(b)): a pulse
                # period per pulse, not its width
                self._fluoro_time_s += period
                if self._frames_to_drop:
                    self._frames_to_drop -= 1
                    dropped += 1
                    continue
                frames.append(frame)
        finally:
            self._beam_on = False
        ended = self._clock.now()
        if dropped:
            self._emit("frames_dropped", frames=dropped)
        run = FluoroRun(tuple(frames), request.pulse_rate_hz, started, ended)
        self._acquired("fluoro", run)
        self._emit("fluoro_ended", frames=len(frames))
        return run

    async def _tomosynthesis(self, request: TomoRequest) -> TomoSeries:
        # imported here: reconstruction code is only needed by rooms that sweep
        from .physics.tomo import SweepSpec, tomosynthesis

        self._ready_technique("tomosynthesis")  # interlocks; the sweep brings its own technique
        self.check_request("tomosynthesis", request)
        self._generator_check("tomosynthesis")
        technique = request.technique
        started = self._clock.now() + EXPOSURE_LATENCY_S
        sweep_s = request.projections * SWEEP_S_PER_PROJECTION
        self._beam_on = True
        self._emit("tomo_started", projections=request.projections, sweep_deg=request.sweep_deg)
        try:
            await asyncio.sleep(EXPOSURE_LATENCY_S)
            geometry, params, conc, volumes, t_model = self._scene(technique)
            spec = SweepSpec(
                sweep_deg=request.sweep_deg,
                projections=request.projections,
                # pivot in the middle of the requested slab: least blur where it is wanted
                fulcrum_height_mm=float(np.mean(request.layer_heights_mm)),
            )
            result = await asyncio.get_running_loop().run_in_executor(
                None,
                functools.partial(
                    tomosynthesis,
                    self._radiography,
                    geometry,
                    params,
                    spec,
                    request.layer_heights_mm,
                    conc,
                    volumes,
                    time_s=t_model,
                ),
            )
            await self._clock.sleep_until(started + sweep_s)
        finally:
            self._beam_on = False
        self._cum_rak_mgy += result.reference_air_kerma_mgy
        self._cum_dap += result.dap_gy_cm2
        ended = self._clock.now()
        sweep_dose = Dose(
            result.reference_air_kerma_mgy, result.entrance_air_kerma_mgy, result.dap_gy_cm2
        )
        none = Dose(0.0, 0.0, 0.0)
        layers = tuple(
            Frame(
                # reconstructed on board from projections the panel corrected itself
                pixels=corrected_on_board(layer, self._radiography.detector),
                pixel_spacing_mm=result.pixel_spacing_mm,
                acquired_at_s=started,
                technique=technique,
                pose=self._pose,
                collimation=self._collimation,
                # the sweep's dose once, on the first layer, so sums over frames stay true
                dose=sweep_dose if i == 0 else none,
            )
            for i, layer in enumerate(result.layers)
        )
        series = TomoSeries(
            layers, tuple(result.heights_mm), request.sweep_deg, request.projections, started, ended
        )
        if self._frames_to_drop:
            self._frames_to_drop -= 1
            self._emit("frames_dropped", frames=len(layers))
            raise DeviceFault(
                self.name, "tomosynthesis", "dropped_frame", "sweep made; the detector lost it"
            )
        self._acquired("tomo", series)
        self._emit(
            "tomo_ended",
            layers=len(result.layers),
            reference_air_kerma_mgy=result.reference_air_kerma_mgy,
        )
        await asyncio.sleep(READOUT_S)
        return series

    async def _beam_off(self) -> None:
        armed = self._armed
        if armed is not None and not armed.done():
            armed.set_result(None)
            self._emit("exposure_disarmed", reason="beam_off")
        if self._beam_on:
            self._beam_on = False
            self._emit("beam_off")

    async def _status(self) -> CArmStatus:
        return CArmStatus(
            ready=self._technique is not None and not self._moving,
            beam_on=self._beam_on,
            technique=self._technique,
            pose=self._pose,
            collimation=self._collimation,
            moving=self._moving,
            fluoro_time_s=self._fluoro_time_s,
            cumulative_reference_air_kerma_mgy=self._cum_rak_mgy,
            cumulative_dap_gy_cm2=self._cum_dap,
            armed=self._armed is not None and not self._armed.done(),
        )

    # -- internals -------------------------------------------------------------------------
    async def _aec_end(self, technique: Technique) -> Technique:
        """With an AEC technique, the exposure time the chambers end at (hardware_sim/aec.py)."""
        if technique.aec is None:
            return technique
        scene = self._scene(technique)
        exposed, (kind, data) = await asyncio.get_running_loop().run_in_executor(
            None,
            functools.partial(
                self.aec.end_exposure,
                self._radiography,
                scene,
                technique,
                self.limits.max_mas,
                failed=self.aec.take_fault(),
            ),
        )
        self._emit(kind, **data)
        return exposed

    def _indexed(self, frame: Frame) -> Frame:
        """``frame`` with the exposure index the panel states from its own corrected signal."""
        detector = self._radiography.detector
        own = None if self.panel_corrections else corrected_on_board(frame.pixels, detector)
        return with_exposure_index(frame, detector, PEDESTAL_COUNTS, own)

    def _ready_technique(self, operation: str) -> Technique:
        if self._technique is None:
            raise DeviceStateError(self.name, operation, "no technique set")
        if self._moving:
            raise DeviceStateError(self.name, operation, "positioner is moving")
        if self._beam_on:
            raise DeviceStateError(self.name, operation, "beam already on")
        if self._table.moving:
            # The room's hardware interlock, independent of the scheduler's safety checks.
            raise DeviceStateError(self.name, operation, "table is moving")
        return self._technique

    def _scene(
        self, technique: Technique
    ) -> tuple[ViewGeometry, TechniqueParams, dict[str, float], dict[str, float], float]:
        """The patient and geometry as they are now, for the imaging chain."""
        now = self._clock.now()
        patient = self._patient
        patient.advance()
        kinetics = patient.kinetics
        table = self._table.position_at(now)
        geometry = ViewGeometry(
            patient_position=patient.position,
            tube_angle_deg=-self._pose.secondary_angle_deg,  # DICOM cranial+ → caudad+
            sid_mm=self._pose.sid_mm,
            centre_z_mm=table.longitudinal_mm,
            centre_x_mm=table.lateral_mm,
            field_width_mm=self._collimation.width_mm,
            field_height_mm=self._collimation.height_mm,
        )
        params = TechniqueParams(
            kvp=technique.kv,
            mas=technique.mas,
            filtration_mm_al=technique.filtration_mm_al,
            filtration_mm_cu=technique.filtration_mm_cu,
            focal_spot_mm=FOCAL_SPOT_MM[technique.focal_spot],
        )
        conc, volumes = kinetics.concentrations_mg_ml(), kinetics.volumes_ml()
        return geometry, params, conc, volumes, kinetics.time_s

    async def _render(self, technique: Technique, chain: ImagingChain) -> Frame:
        """Render the patient as it is now; the arithmetic runs off the event loop.

        On virtual time executor work costs no loop time, so results do not change; on real or
        scaled time (``sim serve``) the loop keeps answering heartbeats and status queries while
        a new view is built (up to ~2 s for the first one).
        """
        now = self._clock.now()
        geometry, params, conc, volumes, t_model = self._scene(technique)

        def develop() -> tuple[RenderedImage, npt.NDArray[np.uint16]]:
            image = chain.render(geometry, params, conc, volumes, time_s=t_model)
            return image, self._on_board(image.pixels, chain)

        image, pixels = await asyncio.get_running_loop().run_in_executor(None, develop)
        self._cum_rak_mgy += image.reference_air_kerma_mgy
        self._cum_dap += image.dap_gy_cm2
        return Frame(
            pixels=pixels,
            pixel_spacing_mm=image.pixel_spacing_mm,
            acquired_at_s=now,
            technique=technique,
            pose=self._pose,
            collimation=self._collimation,
            dose=Dose(
                reference_air_kerma_mgy=image.reference_air_kerma_mgy,
                entrance_air_kerma_mgy=image.entrance_air_kerma_mgy,
                dap_gy_cm2=image.dap_gy_cm2,
            ),
        )

    def _on_board(self, raw: npt.NDArray[np.uint16], chain: ImagingChain) -> npt.NDArray[np.uint16]:
        """The frame as the panel delivers it: as read (raw), or corrected on board."""
        if not self.panel_corrections:
            return raw
        return corrected_on_board(raw, chain.detector)

    # -- calibration -------------------------------------------------------------------------
    def panel_modes(self) -> tuple[PanelMode, ...]:
        return tuple(
            PanelMode(name, d.rows, d.cols, round(d.pixel_mm / base), d.pixel_mm)
            for name, d, base in (
                ("radiography", self._radiography.detector, self._radiography.detector.pixel_mm),
                ("fluoroscopy", self._fluoroscopy.detector, self._radiography.detector.pixel_mm),
            )
        )

    async def _calibration_frames(self, mode: str, kind: str, count: int) -> tuple[Frame, ...]:
        chains = {"radiography": self._radiography, "fluoroscopy": self._fluoroscopy}
        if mode not in chains:
            raise DeviceStateError(self.name, "calibration_frames", f"no panel mode {mode!r}")
        if self._beam_on:
            raise DeviceStateError(self.name, "calibration_frames", "beam already on")
        detector = chains[mode].detector
        images = await asyncio.get_running_loop().run_in_executor(
            None, calibration_images, detector, kind, count
        )
        technique = Technique(70.0, 100.0, 100.0)  # the flat's open-field beam (10 mAs)
        none = Dose(0.0, 0.0, 0.0)
        now = self._clock.now()
        return tuple(
            Frame(
                pixels=self._on_board(np.array(image), chains[mode]),
                pixel_spacing_mm=detector.pixel_mm,
                acquired_at_s=now,
                technique=technique,
                pose=self._pose,
                collimation=self._collimation,
                dose=none,  # nobody in the beam: nothing to book against a patient
            )
            for image in images
        )

    def _emit(self, kind: str, **data: object) -> None:
        self._publish(DeviceEvent(self.name, kind, self._clock.now(), data))
