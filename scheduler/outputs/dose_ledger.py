"""An exam's irradiation events and dose alerts, read back from its folder.

The one source of the dose report, the X-Ray Radiation Dose SR and ``summary.json``'s
``dose`` section, so the three always agree. It is read from what the exam left on disk, the
same after a restart as after one uninterrupted run:

* the journal (``events.jsonl``): each ``capture`` line gives an image's file, step, kind,
  kV, reference air kerma and DAP as the C-arm reported them; the dose notices
  (``fluoro_timer_alert``, ``air_kerma_notification``, ``dose_rate_exceeded``) are the
  alerts; ``injection_confirmed``/``injection_adopted`` the injection start; ``exam_started``
  the room's dose limits;
* each image's DICOM header (read without its pixels): Irradiation Event UID, acquisition
  time, tube current, exposure time, pulses, field, geometry.

**One irradiation event** (DICOM PS3.3 C.7.6.1.1.7: one continuous switching-on of the beam
as the user triggered it, a pulsed run included) per radiograph, per fluoroscopy run and per
tomosynthesis sweep. The layers of a sweep share its Irradiation Event UID: they are one event
with the sweep's dose counted once (the journal books it on the first layer, every layer's
image states it).

Units: reference air kerma at the IEC 60601-2-43 patient entrance reference point (15 cm from
the isocentre toward the source, no backscatter) in mGy; dose-area product (DAP, kerma-area
product) in Gy·cm²; fluoroscopy time (21 CFR 1020.30(b) fluoroscopic irradiation time: the
run's duration, pulses × pulse period) in s.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset

from ..safety import fluoro_run_time_s

JOURNAL = "events.jsonl"
#: journal kinds that are dose alerts (scheduler.safety.DoseMonitor's notices)
ALERT_KINDS = ("fluoro_timer_alert", "air_kerma_notification", "dose_rate_exceeded")


@dataclass(frozen=True, slots=True)
class DoseEvent:
    """One irradiation event: a radiograph, a fluoroscopy run or a tomosynthesis sweep."""

    uid: str  # Irradiation Event UID (0008,3010), as the images carry it
    kind: str  # radiograph | fluoro | tomo
    step: str
    label: str  # the step's series description
    files: tuple[str, ...]  # its images (a sweep: every layer)
    started: dt.datetime | None  # aware: Acquisition DateTime of the first image
    t_s: float | None  # loop time the device reported (the first frame)
    after_injection_s: float | None
    position: str
    kv: float
    ma: float
    #: beam time: the exposure of a radiograph or sweep; pulse width × pulses of a run
    exposure_time_ms: float
    mas: float
    #: how long the event lasted: exposure time; a run's pulses × period; a sweep's sweep
    irradiation_duration_s: float
    pulse_rate_hz: float | None
    pulses: int | None
    pulse_width_ms: float | None
    dap_gy_cm2: float
    reference_air_kerma_mgy: float
    field_area_cm2: float | None  # collimated field at the image receptor
    sid_mm: float | None
    source_isocentre_mm: float | None
    primary_angle_deg: float
    secondary_angle_deg: float  # column angulation: + toward the head
    projections: int | None = None  # a sweep's
    sweep_deg: float | None = None

    @property
    def fluoro_time_s(self) -> float:
        return self.irradiation_duration_s if self.kind == "fluoro" else 0.0


@dataclass(frozen=True, slots=True)
class DoseAlert:
    """A dose notice the exam journaled (fluoro timer, air-kerma level, rate)."""

    kind: str
    message: str
    value: float
    t_s: float
    after_injection_s: float | None
    step: str | None


@dataclass(frozen=True, slots=True)
class DoseLedger:
    events: tuple[DoseEvent, ...]
    alerts: tuple[DoseAlert, ...]
    #: the room's dose limits the exam ran under (its ``dose:`` section, defaults filled)
    limits: dict[str, Any] = field(default_factory=dict)
    injection_start_s: float | None = None
    #: images whose header could not be read (left out of the events, named here)
    unreadable: tuple[str, ...] = ()

    # -- totals (sums over the events: each irradiation counted once) -------------------------
    def _sum(self, attr: str, kinds: tuple[str, ...]) -> float:
        return sum(float(getattr(e, attr)) for e in self.events if e.kind in kinds)

    @property
    def dap_gy_cm2(self) -> float:
        return self._sum("dap_gy_cm2", ("radiograph", "fluoro", "tomo"))

    @property
    def reference_air_kerma_mgy(self) -> float:
        return self._sum("reference_air_kerma_mgy", ("radiograph", "fluoro", "tomo"))

    @property
    def fluoro_dap_gy_cm2(self) -> float:
        return self._sum("dap_gy_cm2", ("fluoro",))

    @property
    def fluoro_reference_air_kerma_mgy(self) -> float:
        return self._sum("reference_air_kerma_mgy", ("fluoro",))

    @property
    def acquisition_dap_gy_cm2(self) -> float:
        return self._sum("dap_gy_cm2", ("radiograph", "tomo"))

    @property
    def acquisition_reference_air_kerma_mgy(self) -> float:
        return self._sum("reference_air_kerma_mgy", ("radiograph", "tomo"))

    @property
    def fluoro_time_s(self) -> float:
        return self._sum("irradiation_duration_s", ("fluoro",))

    @property
    def acquisition_time_s(self) -> float:
        return self._sum("irradiation_duration_s", ("radiograph", "tomo"))

    @property
    def radiographic_frames(self) -> int:
        """Acquisition irradiation events (a radiograph, a sweep): DICOM's Total Number of
        Radiographic Frames counts recorded acquisitions, not fluoroscopy frames."""
        return sum(1 for e in self.events if e.kind in ("radiograph", "tomo"))


def read_ledger(out_dir: Path) -> DoseLedger:
    """The exam's irradiation events and alerts, from ``out_dir``'s journal and images."""
    lines = _journal(out_dir / JOURNAL)
    limits: dict[str, Any] = {}
    rates: dict[str, float] = {}
    anchor: float | None = None
    captures: list[dict[str, Any]] = []
    alerts: list[tuple[dict[str, Any], str]] = []
    for line in lines:
        kind = line.get("kind")
        data = line.get("data") or {}
        if kind == "exam_started":
            room = (data.get("context") or {}).get("room") or {}
            limits = _limits(room.get("dose") or {})
            rates = _pulse_rates((data.get("context") or {}).get("protocol") or {})
        elif kind in ("injection_confirmed", "injection_adopted") and anchor is None:
            anchor = _float_or_none(data.get("started_at_s"))
        elif kind == "capture" and line.get("source") == "scheduler":
            captures.append(line)
        elif kind in ALERT_KINDS and line.get("source") == "safety":
            alerts.append((line, str(kind)))
    events, unreadable = _events(out_dir, captures, rates)
    return DoseLedger(
        events=tuple(events),
        alerts=tuple(
            DoseAlert(
                kind=kind,
                message=str((line.get("data") or {}).get("message", "")),
                value=float((line.get("data") or {}).get("value") or 0.0),
                t_s=float(line.get("t_s") or 0.0),
                after_injection_s=None if anchor is None else float(line["t_s"]) - anchor,
                step=line.get("step"),
            )
            for line, kind in alerts
        ),
        limits=limits,
        injection_start_s=anchor,
        unreadable=tuple(unreadable),
    )


def _limits(given: dict[str, Any]) -> dict[str, Any]:
    from ..policy import DoseLimits  # the room's defaults fill what the file left out

    try:
        return DoseLimits.model_validate(given).model_dump(mode="json")
    except ValueError:
        return dict(given)


def _journal(path: Path) -> list[dict[str, Any]]:
    """Every whole line of the journal (a torn last line is left out)."""
    out: list[dict[str, Any]] = []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return out
    for raw in text.splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if isinstance(line, dict):
            out.append(line)
    return out


def _pulse_rates(protocol: dict[str, Any]) -> dict[str, float]:
    """Each fluoroscopy step's pulse rate, as the protocol the exam ran set it."""
    out: dict[str, float] = {}
    for step in protocol.get("steps") or []:
        rate = _float_or_none(step.get("pulse_rate_hz")) if isinstance(step, dict) else None
        if rate:
            out[str(step.get("id"))] = rate
    return out


def _events(
    out_dir: Path, captures: list[dict[str, Any]], rates: dict[str, float]
) -> tuple[list[DoseEvent], list[str]]:
    """Group the capture lines by Irradiation Event UID (a sweep's layers are one event)."""
    grouped: dict[str, list[tuple[dict[str, Any], Dataset]]] = {}
    unreadable: list[str] = []
    seen: set[str] = set()
    for line in captures:
        name = str((line.get("data") or {}).get("file", ""))
        if not name or name in seen:
            continue
        seen.add(name)
        try:
            header = pydicom.dcmread(out_dir / name, stop_before_pixels=True)
            uid = str(header.IrradiationEventUID)
        except Exception:  # a damaged or missing image: named, never fatal to the report
            unreadable.append(name)
            continue
        grouped.setdefault(uid, []).append((line, header))
    return [_event(uid, parts, rates) for uid, parts in grouped.items()], unreadable


def _event(
    uid: str, parts: list[tuple[dict[str, Any], Dataset]], rates: dict[str, float]
) -> DoseEvent:
    line, ds = parts[0]
    data: dict[str, Any] = line.get("data") or {}
    kind = str(data.get("image_kind", "radiograph"))
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    frame_time_ms = _float_or_none(ds.get("FrameTime"))
    rate: float | None = None
    if kind == "fluoro":  # the protocol's rate; the header's frame time is rounded
        rate = rates.get(str(line.get("step"))) or (
            1000.0 / frame_time_ms if frame_time_ms else None
        )
    exposure_ms = _us_or_ms(ds, "ExposureTimeInuS", "ExposureTime")
    if kind == "fluoro":
        duration = fluoro_run_time_s(frames, rate or 0.0)
    elif kind == "tomo":
        duration = _float_or_none(ds.get("TomoTime")) or exposure_ms / 1000.0
    else:
        duration = exposure_ms / 1000.0
    mas = _float_or_none(ds.get("ExposureInuAs"))
    ma = _float_or_none(ds.get("XRayTubeCurrentInuA"))
    return DoseEvent(
        uid=uid,
        kind=kind,
        step=str(line.get("step") or ""),
        label=str(ds.get("SeriesDescription", "") or line.get("step") or ""),
        files=tuple(str((p[0].get("data") or {}).get("file")) for p in parts),
        started=_acquired(ds),
        t_s=_float_or_none(data.get("device_s")),
        after_injection_s=_float_or_none(data.get("after_injection_s")),
        position=str(data.get("position", "")),
        kv=float(data.get("kv") or ds.get("KVP") or 0.0),
        ma=ma / 1000.0 if ma is not None else float(ds.get("XRayTubeCurrent") or 0.0),
        exposure_time_ms=exposure_ms,
        mas=mas / 1000.0 if mas is not None else float(ds.get("Exposure") or 0.0),
        irradiation_duration_s=duration,
        pulse_rate_hz=rate,
        pulses=frames if kind == "fluoro" else None,
        pulse_width_ms=_float_or_none(ds.get("AveragePulseWidth")) if kind == "fluoro" else None,
        dap_gy_cm2=sum(float((p[0].get("data") or {}).get("dap_gy_cm2") or 0.0) for p in parts),
        reference_air_kerma_mgy=sum(
            float((p[0].get("data") or {}).get("reference_air_kerma_mgy") or 0.0) for p in parts
        ),
        field_area_cm2=_field_area_cm2(ds),
        sid_mm=_float_or_none(ds.get("DistanceSourceToDetector")),
        source_isocentre_mm=_float_or_none(ds.get("DistanceSourceToPatient")),
        # the scheduler commands no primary (LAO/RAO) rotation: an R/F tube tilts along the
        # table only, which the images record as Column Angulation
        primary_angle_deg=_float_or_none(ds.get("PositionerPrimaryAngle")) or 0.0,
        secondary_angle_deg=_float_or_none(ds.get("ColumnAngulation")) or 0.0,
        projections=int(ds.NumberOfTomosynthesisSourceImages)
        if kind == "tomo" and "NumberOfTomosynthesisSourceImages" in ds
        else None,
        sweep_deg=_float_or_none(ds.get("TomoAngle")) if kind == "tomo" else None,
    )


def _us_or_ms(ds: Dataset, fine: str, coarse: str) -> float:
    """A time in ms from its µs attribute, else its ms one."""
    us = _float_or_none(ds.get(fine))
    if us is not None:
        return us / 1000.0
    return float(ds.get(coarse) or 0.0)


def _field_area_cm2(ds: Dataset) -> float | None:
    """The collimated field at the image receptor: the collimator's rectangle in pixels
    times the imager pixel spacing."""
    try:
        spacing = [float(v) for v in ds.ImagerPixelSpacing]
        cols = int(ds.CollimatorRightVerticalEdge) - int(ds.CollimatorLeftVerticalEdge) + 1
        rows = int(ds.CollimatorLowerHorizontalEdge) - int(ds.CollimatorUpperHorizontalEdge) + 1
    except (AttributeError, TypeError, ValueError):
        return None
    return cols * spacing[1] * rows * spacing[0] / 100.0


def _acquired(ds: Dataset) -> dt.datetime | None:
    value = str(ds.get("AcquisitionDateTime", "") or "")
    if not value:
        return None
    try:
        parsed = pydicom.valuerep.DT(value)
    except ValueError:
        return None
    return dt.datetime.fromisoformat(parsed.isoformat())


def _float_or_none(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
