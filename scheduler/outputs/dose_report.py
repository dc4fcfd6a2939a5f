"""The exam's dose for people: ``dose-report.html`` and ``summary.json``'s ``dose`` section.

Both come from one dict (:func:`dose_section`, built from :mod:`.dose_ledger`), so the page
and the summary always say the same. The page is self-contained: styles inline, thumbnails
as PNG data URIs made from the images' own (display-ready) pixels, no script, no external
address. Field names and units are in docs/results.md ("Dose").

:func:`write_dose_outputs` is the one call an exam's end makes: the ledger, the X-Ray
Radiation Dose SR (:mod:`.dose_sr`), the page, and the section for the summary. Nothing in
it may hide the exam's outcome: a part that cannot be written is logged and named in the
section (``sr_error``, ``report_error``).
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pydicom

from ..records import ExamInfo
from .dicom_write import ImageExistsError
from .dose_html import THUMB_PX, render_dose_report
from .dose_ledger import DoseEvent, DoseLedger, read_ledger
from .dose_sr import DOSE_SR_FILE, write_dose_sr
from .files import create_temporary

__all__ = ["DOSE_REPORT_FILE", "dose_section", "render_dose_report", "write_dose_outputs"]

log = logging.getLogger(__name__)

DOSE_REPORT_FILE = "dose-report.html"
REFERENCE_POINT = (
    "IEC 60601-2-43 patient entrance reference point: 15 cm from the isocentre toward "
    "the source, in air, without backscatter"
)


def _r(x: float | None, digits: int = 6) -> float | None:
    return None if x is None else round(float(x), digits)


def _event_json(event: DoseEvent) -> dict[str, Any]:
    return {
        "irradiation_event_uid": event.uid,
        "kind": event.kind,
        "step": event.step,
        "label": event.label,
        "files": list(event.files),
        "started": None if event.started is None else event.started.isoformat(),
        "after_injection_s": _r(event.after_injection_s, 3),
        "position": event.position,
        "kv": _r(event.kv, 3),
        "ma": _r(event.ma, 3),
        "mas": _r(event.mas, 4),
        "exposure_time_ms": _r(event.exposure_time_ms, 3),
        "irradiation_duration_s": _r(event.irradiation_duration_s, 4),
        "pulse_rate_hz": _r(event.pulse_rate_hz, 4),
        "pulses": event.pulses,
        "pulse_width_ms": _r(event.pulse_width_ms, 3),
        "fluoro_time_s": _r(event.fluoro_time_s, 4),
        "dap_gy_cm2": _r(event.dap_gy_cm2),
        "reference_air_kerma_mgy": _r(event.reference_air_kerma_mgy),
        "field_area_cm2": _r(event.field_area_cm2, 2),
        "primary_angle_deg": _r(event.primary_angle_deg, 2),
        "secondary_angle_deg": _r(event.secondary_angle_deg, 2),
        "tomo_projections": event.projections,
        "tomo_sweep_deg": _r(event.sweep_deg, 2),
    }


def dose_section(ledger: DoseLedger) -> dict[str, Any]:
    """``summary.json``'s ``dose``: per irradiation event, totals, alerts and the levels the
    room set (docs/results.md)."""
    events = ledger.events
    return {
        "reference_point": REFERENCE_POINT,
        "events": [_event_json(e) for e in events],
        "totals": {
            "irradiation_events": len(events),
            "radiographs": sum(1 for e in events if e.kind == "radiograph"),
            "fluoro_runs": sum(1 for e in events if e.kind == "fluoro"),
            "tomo_sweeps": sum(1 for e in events if e.kind == "tomo"),
            "dap_gy_cm2": _r(ledger.dap_gy_cm2),
            "reference_air_kerma_mgy": _r(ledger.reference_air_kerma_mgy),
            "fluoro_dap_gy_cm2": _r(ledger.fluoro_dap_gy_cm2),
            "fluoro_reference_air_kerma_mgy": _r(ledger.fluoro_reference_air_kerma_mgy),
            "acquisition_dap_gy_cm2": _r(ledger.acquisition_dap_gy_cm2),
            "acquisition_reference_air_kerma_mgy": _r(ledger.acquisition_reference_air_kerma_mgy),
            "fluoro_time_s": _r(ledger.fluoro_time_s, 4),
            "acquisition_time_s": _r(ledger.acquisition_time_s, 4),
        },
        "alerts": [
            {
                "kind": a.kind,
                "message": a.message,
                "value": _r(a.value, 4),
                "t_s": _r(a.t_s, 3),
                "after_injection_s": _r(a.after_injection_s, 3),
                "step": a.step,
            }
            for a in ledger.alerts
        ],
        "levels": dict(ledger.limits),
        "unreadable_files": list(ledger.unreadable),
        "sr": None,
        "report": None,
    }


# -- thumbnails -------------------------------------------------------------------------------


def thumbnail_uri(path: Path, width: int = THUMB_PX) -> str | None:
    """A small PNG of the image (the middle frame of a run) as its viewer would show it,
    as a data URI; None when the file cannot be read."""
    try:
        ds = pydicom.dcmread(path)
        pixels = ds.pixel_array
        if pixels.ndim == 3:
            pixels = pixels[len(pixels) // 2]
        shown = pixels.astype(np.float64)
        if "WindowCenter" in ds and "WindowWidth" in ds:  # the window a viewer opens with
            centre, span = float(_first(ds.WindowCenter)), float(_first(ds.WindowWidth))
            lo, hi = centre - span / 2.0, centre + span / 2.0
        else:
            lo, hi = float(shown.min()), float(shown.max())
        grey = np.clip((shown - lo) / max(hi - lo, 1e-9) * 255.0, 0, 255).astype(np.uint8)
        if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":
            grey = 255 - grey
        h = max(1, round(grey.shape[0] * width / grey.shape[1]))
        small = cv2.resize(grey, (width, h), interpolation=cv2.INTER_AREA)
        ok, encoded = cv2.imencode(".png", small)
        if not ok:
            return None
        return "data:image/png;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")
    except Exception:  # a damaged image gets no thumbnail; the report stands
        return None


def _first(value: Any) -> Any:
    try:
        return value[0]
    except (TypeError, IndexError, KeyError):
        return value


# -- writing ----------------------------------------------------------------------------------


def _write_text(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all (temporary file, fsync, rename), mode 0644."""
    fd, tmp = create_temporary(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_dose_outputs(out_dir: Path, exam: ExamInfo, *, ended: dt.datetime) -> dict[str, Any]:
    """At an exam's end: the X-Ray Radiation Dose SR (``dose-sr.dcm``), the page
    (``dose-report.html``) and the section ``summary.json`` carries as ``dose``.

    Never raises for a part that cannot be made: it is logged and named in the section
    (``sr_error``, ``report_error``). The SR is written before the exam's PACS session
    queues the folder (the caller runs this first). No irradiation: no SR.
    """
    out_dir = Path(out_dir)
    ledger = read_ledger(out_dir)
    section = dose_section(ledger)
    try:
        path = write_dose_sr(ledger, exam, out_dir, written=ended)
        section["sr"] = None if path is None else path.name
    except ImageExistsError as exc:  # an earlier end wrote one: it stands, never replaced
        section["sr"] = DOSE_SR_FILE
        section["sr_error"] = str(exc)
        log.error("dose SR: %s", exc)
    except Exception as exc:  # the images and the journal stand; the report names it
        section["sr_error"] = f"{type(exc).__name__}: {exc}"
        log.error("dose SR not written: %s", exc)
    try:
        thumbs = {
            name: uri
            for event in ledger.events
            for name in event.files
            if (uri := thumbnail_uri(out_dir / name)) is not None
        }
        section["report"] = DOSE_REPORT_FILE
        _write_text(out_dir / DOSE_REPORT_FILE, render_dose_report(section, exam, thumbs))
    except Exception as exc:
        section["report"] = None
        section["report_error"] = f"{type(exc).__name__}: {exc}"
        log.error("dose report not written: %s", exc)
    return section
