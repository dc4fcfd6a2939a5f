"""``dose-report.html``: the dose section (:func:`.dose_report.dose_section`) as a page for
people. Self-contained: inline style and SVG, thumbnails as data URIs, no script, no address
outside the page."""

from __future__ import annotations

import html
from typing import Any

from ..records import ExamInfo
from .timing import format_after_injection

#: thumbnail width in pixels (height follows the image's aspect)
THUMB_PX = 96

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#111}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.5em}
table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #bbb;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#eee}td.num{text-align:right;font-variant-numeric:tabular-nums}
.alert{color:#8a1c00;font-weight:600}img{display:block;margin:2px 0;background:#000}
.bar{fill:#4a7ab5}.fluoro{fill:#c07a00}.tomo{fill:#5a9a4a}
"""


def _e(x: object) -> str:
    return html.escape(str(x), quote=True)


def _fmt(x: float | None, unit: str = "", digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}{(' ' + unit) if unit else ''}"


def _technique(ev: dict[str, Any]) -> str:
    parts = [f"{ev['kv']:g} kV", f"{ev['ma']:g} mA"]
    if ev["kind"] == "fluoro":
        parts.append(
            f"{ev['pulses']} pulses × {ev['pulse_width_ms']:g} ms at {ev['pulse_rate_hz']:g} p/s"
        )
        parts.append(f"run {ev['irradiation_duration_s']:g} s")
    else:
        parts.append(f"{ev['exposure_time_ms']:g} ms, {ev['mas']:g} mAs")
    if ev["kind"] == "tomo" and ev["tomo_sweep_deg"] is not None:
        parts.append(
            f"sweep {ev['tomo_sweep_deg']:g}° / {ev['tomo_projections']} projections, "
            f"{len(ev['files'])} layers"
        )
    if ev["secondary_angle_deg"]:
        parts.append(f"column {ev['secondary_angle_deg']:+g}°")
    return ", ".join(parts)


def _when(seconds: float | None) -> str:
    return "before contrast" if seconds is None else format_after_injection(seconds)


def _timeline_svg(events: list[dict[str, Any]]) -> str:
    """Each event as a mark on the time axis after the injection (pre-contrast at the left)."""
    times = [e["after_injection_s"] for e in events if e["after_injection_s"] is not None]
    span = max([60.0, *times])
    width, left, right = 720.0, 90.0, 20.0
    scale = (width - left - right) / span
    marks = []
    for ev in events:
        t = ev["after_injection_s"]
        x = 40.0 if t is None else left + max(t, 0.0) * scale
        css = {"fluoro": "fluoro", "tomo": "tomo"}.get(ev["kind"], "bar")
        marks.append(
            f'<rect class="{css}" x="{x - 2:.1f}" y="10" width="4" height="30">'
            f"<title>{_e(ev['label'])} {_e(_when(t))}</title></rect>"
        )
    ticks = []
    step = 300.0 if span > 1200 else 60.0
    n = 0
    while n * step <= span:
        x = left + n * step * scale
        ticks.append(
            f'<text x="{x:.1f}" y="56" font-size="10" text-anchor="middle">'
            f"{n * step / 60:g} min</text>"
        )
        n += 1
    return (
        f'<svg width="{width:.0f}" height="64" '
        'role="img" aria-label="exposure timeline">'
        '<text x="40" y="56" font-size="10" text-anchor="middle">pre</text>'
        f'<line x1="{left}" y1="42" x2="{width - right}" y2="42" stroke="#555"/>'
        + "".join(marks)
        + "".join(ticks)
        + "</svg>"
    )


def render_dose_report(
    section: dict[str, Any], exam: ExamInfo, thumbnails: dict[str, str] | None = None
) -> str:
    """The page for ``section`` (:func:`dose_section`); ``thumbnails`` maps an image file to
    a ``data:image/png;base64,...`` URI."""
    thumbs = thumbnails or {}
    t = section["totals"]
    levels = section.get("levels") or {}
    rows = []
    for i, ev in enumerate(section["events"], 1):
        images = "".join(
            f'<img src="{_e(thumbs[f])}" alt="{_e(f)}" width="{THUMB_PX}">'
            for f in ev["files"]
            if f in thumbs
        )
        rows.append(
            f'<tr class="event" data-uid="{_e(ev["irradiation_event_uid"])}" '
            f'data-kind="{_e(ev["kind"])}" data-dap-gy-cm2="{ev["dap_gy_cm2"]!r}" '
            f'data-reference-air-kerma-mgy="{ev["reference_air_kerma_mgy"]!r}" '
            f'data-kv="{ev["kv"]!r}">'
            f"<td>{i}</td><td>{_e(_when(ev['after_injection_s']))}</td>"
            f"<td>{_e(ev['label'])}<br><small>{_e(ev['kind'])} · "
            f"{_e(', '.join(ev['files']))}</small></td>"
            f"<td>{_e(_technique(ev))}</td>"
            f'<td class="num">{_fmt(ev["dap_gy_cm2"], "Gy·cm²", 4)}</td>'
            f'<td class="num">{_fmt(ev["reference_air_kerma_mgy"], "mGy", 3)}</td>'
            f"<td>{images}</td></tr>"
        )
    totals = [
        ("irradiation_events", "Irradiation events", str(t["irradiation_events"])),
        ("radiographs", "Radiographs", str(t["radiographs"])),
        ("fluoro_runs", "Fluoroscopy runs", str(t["fluoro_runs"])),
        ("tomo_sweeps", "Tomosynthesis sweeps", str(t["tomo_sweeps"])),
        ("fluoro_time_s", "Fluoroscopy time", _fmt(t["fluoro_time_s"], "s", 1)),
        ("acquisition_time_s", "Acquisition beam time", _fmt(t["acquisition_time_s"], "s", 3)),
        ("dap_gy_cm2", "Dose-area product (DAP)", _fmt(t["dap_gy_cm2"], "Gy·cm²", 4)),
        (
            "reference_air_kerma_mgy",
            "Reference air kerma (Ka,r)",
            _fmt(t["reference_air_kerma_mgy"], "mGy", 3),
        ),
        ("fluoro_dap_gy_cm2", "of it fluoroscopy: DAP", _fmt(t["fluoro_dap_gy_cm2"], "Gy·cm²", 4)),
        (
            "fluoro_reference_air_kerma_mgy",
            "of it fluoroscopy: Ka,r",
            _fmt(t["fluoro_reference_air_kerma_mgy"], "mGy", 3),
        ),
        (
            "acquisition_dap_gy_cm2",
            "of it acquisitions: DAP",
            _fmt(t["acquisition_dap_gy_cm2"], "Gy·cm²", 4),
        ),
        (
            "acquisition_reference_air_kerma_mgy",
            "of it acquisitions: Ka,r",
            _fmt(t["acquisition_reference_air_kerma_mgy"], "mGy", 3),
        ),
    ]
    total_rows = "".join(
        f'<tr id="total-{key}" data-value="{t[key]!r}"><th>{_e(label)}</th>'
        f'<td class="num">{_e(text)}</td></tr>'
        for key, label, text in totals
    )
    alerts = "".join(
        f'<li class="alert" data-kind="{_e(a["kind"])}">{_e(_when(a["after_injection_s"]))}: '
        f"{_e(a['message'])}</li>"
        for a in section["alerts"]
    )
    level_text = _levels_text(levels)
    p = exam.patient
    unreadable = section.get("unreadable_files") or []
    missing = (
        f"<p class='alert'>Not in this report (image unreadable): {_e(', '.join(unreadable))}</p>"
        if unreadable
        else ""
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Radiation dose report: {_e(exam.study_description)}</title>"
        f"<style>{_STYLE}</style></head><body>"
        f"<h1>Radiation dose report</h1>"
        f"<p>{_e(p.name)} ({_e(p.patient_id)}) · {_e(exam.study_description)} · "
        f"accession {_e(exam.accession_number or '–')} · {_e(exam.station_name)}, "
        f"{_e(exam.institution)}<br>Study {_e(exam.study_instance_uid)}</p>"
        f"<p>Reference air kerma (Ka,r) at the {_e(section['reference_point'])}. "
        "Dose-area product (DAP) as the C-arm reported it. Fluoroscopy time is the time "
        "the fluoroscopy was switched on (21 CFR 1020.30(b)): a pulsed run counts its whole "
        "duration, not its pulse widths. A tomosynthesis sweep is one irradiation whatever "
        "the number of layers reconstructed from it.</p>"
        f"<h2>Totals</h2><table>{total_rows}</table>"
        f"<h2>Alerts</h2>"
        + (f"<ul>{alerts}</ul>" if alerts else "<p>None: no dose level was reached.</p>")
        + f"<p><small>{_e(level_text)}</small></p>"
        f"<h2>Exposure timeline</h2>{_timeline_svg(section['events'])}"
        "<table><tr><th>#</th><th>After injection</th><th>Event</th><th>Technique</th>"
        "<th>DAP</th><th>Ka,r</th><th>Images</th></tr>" + "".join(rows) + "</table>"
        f"{missing}"
        + (
            f"<p>The same data as a DICOM X-Ray Radiation Dose SR: {_e(section['sr'])}.</p>"
            if section.get("sr")
            else ""
        )
        + "</body></html>\n"
    )


def _levels_text(levels: dict[str, Any]) -> str:
    if not levels:
        return ""
    parts = [
        f"Fluoroscopy timer alert every {float(levels['fluoro_alert_interval_s']) / 60:g} min "
        "(21 CFR 1020.32(h))",
        f"Ka,r notifications from {float(levels['air_kerma_notify_mgy']):g} mGy, then every "
        f"{float(levels['air_kerma_notify_step_mgy']):g} mGy",
    ]
    srdl = levels.get("substantial_dose_level_mgy")
    if srdl is not None:
        parts.append(f"substantial radiation dose level {float(srdl):g} mGy (NCRP 168)")
    return "Levels set by the room: " + "; ".join(parts) + "."
