"""Render a labelled IVU image series and the contrast curves of a simulated patient.

``fluoroctl sim render --patient normal --out DIR`` (entry point ``fluoroctl.sim:render``)
calls :func:`render_scenario`: the scenario's patient (kinetics and phantom built by
:class:`~hardware_sim.patient.SimPatient`, as in a simulated exam) gets a bolus at t = 0, the
kinetics run to 60 min (or past the last film) and films are rendered on the way:

* a KUB (centred on the iliac crest, 35 × 43 cm) before contrast and from 15 min on; kidney
  films (centred 12 cm above the crest, 35 × 30 cm) in between, as the film sequence of the
  research note §1.3;
* the patient starts to void right after the last film; a voiding film of the bladder base
  and urethra (centred 2 cm below the symphysis) is taken 5 s into micturition and a
  post-void film (tube 15° caudad, centred 5 cm above the symphysis) 2 min later;
* ``contact-sheet.png``: every film, tiled (the scenario at a glance);
* optionally one nephrotomography panel: a 30°, 25-projection linear sweep at ``tomo_time_s``
  reconstructed at ``tomo_heights_mm`` above the table top (on the panel read 2 × 2 binned,
  512², to keep it quick);
* ``curves.csv`` (time and the concentration of every compartment, mgI/mL, every 10 s) and
  ``curves.png`` (the same, with the film times and the void marked).

Everything is seeded by the scenario's ``seed``: the same call writes the same files.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from drivers import Clock, VirtualTimeEventLoop

from .patient import SimPatient
from .physics import (
    ContrastKinetics,
    DetectorModel,
    ImagingChain,
    Phantom,
    TechniqueParams,
    ViewGeometry,
    to_display,
)
from .physics.tomo import SweepSpec, tomosynthesis
from .scenario import Scenario, load_scenario

U8 = npt.NDArray[np.uint8]

KUB_VIEW = ViewGeometry(centre_z_mm=0.0, field_width_mm=350.0, field_height_mm=430.0)
KIDNEY_VIEW = ViewGeometry(centre_z_mm=120.0, field_width_mm=350.0, field_height_mm=300.0)
KIDNEY_FILMS_UNTIL_S = 900.0  # from 15 min on: full-length KUB (release film) [note §1.3]
POST_VOID_DELAY_S = 120.0
VOIDING_FILM_DELAY_S = 5.0  # into micturition: the stream runs, the urethra is open
SHEET_TILE_PX = 384
SHEET_COLUMNS = 4
POST_VOID_TUBE_ANGLE_DEG = 15.0  # caudad, centred 5 cm above the symphysis [note §1.3]
CURVE_STEP_S = 10.0
CURVE_MIN_END_S = 3600.0
REFERENCE_AP_CM = 22.0
MAS_DOUBLING_CM = 4.0  # ~ one more 4 cm of abdomen halves the exit dose at 72 kVp
FILM_KVP = 72.0
FILM_MAS = 32.0
TOMO_SPEC = SweepSpec(sweep_deg=30.0, projections=25, fulcrum_height_mm=90.0)


@dataclass(frozen=True)
class _Film:
    time_s: float
    name: str
    label: str
    geometry: ViewGeometry


def render_scenario(
    scenario_path: Path,
    out_dir: Path,
    *,
    times_s: Sequence[float] = (0, 12, 60, 300, 600, 900, 1800),
    bolus_ml: float = 50,
    flow_ml_s: float = 4.0,
    concentration_mg_ml: float = 300,
    progress: Callable[[str], None] | None = None,
    tomo_time_s: float | None = 60.0,
    tomo_heights_mm: Sequence[float] = (80.0, 90.0, 100.0),
    size_px: int | None = None,
) -> list[Path]:
    """Render the film series, a nephrotomography panel and the compartment curves of the
    scenario at ``scenario_path`` into ``out_dir`` (created); returns the written paths.

    Contrast: ``bolus_ml`` of ``concentration_mg_ml`` at ``flow_ml_s`` from t = 0.  Films at
    ``times_s`` (s after the start of the injection; ≤ 0 is the scout), then a post-void film.
    ``tomo_time_s=None`` (or no heights) skips the nephrotomograms.  ``size_px`` renders on
    a square panel of that many pixels over the same 43 cm (default: the full panel).
    """
    say = progress or (lambda _msg: None)
    scenario = load_scenario(scenario_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    kinetics, phantom = _patient_models(scenario)
    detector = (
        DetectorModel(seed=scenario.seed)
        if size_px is None
        else _small_panel(size_px, scenario.seed)
    )
    # a small panel renders each film directly: the fast path's per-view precompute pays off
    # only over many frames of a view
    chain = ImagingChain(phantom, detector, seed=scenario.seed, fast=size_px is None)
    technique = TechniqueParams(
        kvp=FILM_KVP,
        mas=round(
            FILM_MAS
            * 2.0 ** ((scenario.build.ap_thickness_cm - REFERENCE_AP_CM) / MAS_DOUBLING_CM),
            1,
        ),
    )
    films = _films(times_s, phantom)
    void_s = max([0.0, *(f.time_s for f in films if f.name not in AFTER_VOID)])
    do_tomo = tomo_time_s is not None and len(tomo_heights_mm) > 0
    end_s = max(CURVE_MIN_END_S, films[-1].time_s)
    bolus_s = bolus_ml / flow_ml_s if flow_ml_s > 0 else 0.0
    rate = concentration_mg_ml * flow_ml_s
    grid = [CURVE_STEP_S * i for i in range(math.floor(end_s / CURVE_STEP_S) + 1)]
    events = {*grid, *(f.time_s for f in films), void_s, end_s}
    if bolus_s > 0:
        events.add(bolus_s)
    if do_tomo and tomo_time_s is not None:
        events.add(float(tomo_time_s))
    say(f"{scenario.id}: {bolus_ml:g} mL × {concentration_mg_ml:g} mgI/mL at {flow_ml_s:g} mL/s")

    written: list[Path] = []
    rows: list[list[float]] = []
    for t in sorted(e for e in events if e >= 0.0):
        if t > kinetics.time_s:
            # the injector's rate over (now, t]; bolus end is an event, so it never straddles
            kinetics.advance_to(t, rate if kinetics.time_s < bolus_s - 1e-9 else 0.0)
        conc = kinetics.concentrations_mg_ml()
        rows.append([t, *(conc[c] for c in ContrastKinetics.COMPARTMENTS)])
        for i, film in enumerate(films):
            if film.time_s == t:
                image = chain.render(film.geometry, technique, conc, kinetics.volumes_ml(), t)
                pixels = to_display(image.pixels, chain.detector.offset_map())
                path = out_dir / f"{i:02d}-{film.name}.png"
                _write_png(path, _labelled(pixels, f"{scenario.id}  {film.label}"))
                written.append(path)
                say(f"{path.name}: {film.label}")
        if do_tomo and tomo_time_s is not None and t == float(tomo_time_s):
            written.append(
                _nephrotomography(out_dir, scenario, phantom, kinetics, technique, tomo_heights_mm)
            )
            say(f"{written[-1].name}: nephrotomography at {_when(t)}")
        if t == void_s:
            kinetics.start_voiding()
    written.append(_contact_sheet(out_dir, [p for p in written if p.name[:2].isdigit()]))
    say(f"{written[-1].name}: every film")
    written += _write_curves(out_dir, rows, [f.time_s for f in films], void_s)
    say(f"curves: {rows[-1][0] / 60.0:g} min")
    return written


# ---------------------------------------------------------------------------------------------
def _patient_models(scenario: Scenario) -> tuple[ContrastKinetics, Phantom]:
    """Kinetics and phantom exactly as a simulated exam builds them (:class:`SimPatient`)."""
    loop = VirtualTimeEventLoop()
    try:
        patient = SimPatient(scenario, Clock(loop))
    finally:
        loop.close()
    return patient.kinetics, patient.phantom


def _when(t: float) -> str:
    if t <= 0:
        return "scout"
    if t < 60.0:
        return f"+{t:g} s"
    return f"+{t / 60.0:g} min"


def _films(times_s: Sequence[float], phantom: Phantom) -> list[_Film]:
    films: list[_Film] = []
    for t in sorted({max(float(t), 0.0) for t in times_s}):
        kidneys = 0.0 < t < KIDNEY_FILMS_UNTIL_S
        view = KIDNEY_VIEW if kidneys else KUB_VIEW
        what = "kidneys" if kidneys else "KUB"
        name = "scout" if t <= 0 else (f"{t:g}s" if t < 60 else f"{t / 60:g}min")
        films.append(_Film(t, name, f"{_when(t)}  {what}", view))
    last = films[-1].time_s if films else 0.0
    symphysis_z = phantom.landmarks["symphysis"][2]
    post = replace(
        KUB_VIEW,
        tube_angle_deg=POST_VOID_TUBE_ANGLE_DEG,
        centre_z_mm=symphysis_z + 50.0,
        field_height_mm=300.0,
    )
    voiding = replace(KUB_VIEW, centre_z_mm=symphysis_z - 20.0, field_height_mm=300.0)
    t_voiding = last + VOIDING_FILM_DELAY_S
    films.append(_Film(t_voiding, "voiding", f"voiding ({_when(t_voiding)})  urethra", voiding))
    t_post = last + POST_VOID_DELAY_S
    films.append(_Film(t_post, "post-void", f"post-void ({_when(t_post)})  bladder", post))
    return films


AFTER_VOID = ("voiding", "post-void")


def _small_panel(size_px: int, seed: int) -> DetectorModel:
    """A square panel of ``size_px`` over 43 cm, its ADC gain scaled with the pixel area so
    that its bigger pixels read the same counts per µGy (and do not saturate)."""
    pitch = 430.0 / size_px
    gain = DetectorModel.electrons_per_count * (pitch / DetectorModel.pixel_mm) ** 2
    return DetectorModel(
        rows=size_px, cols=size_px, pixel_mm=pitch, electrons_per_count=gain, seed=seed
    )


def _contact_sheet(out_dir: Path, films: Sequence[Path]) -> Path:
    """Every film of the series on one page, in order, ``SHEET_COLUMNS`` across."""
    tiles = []
    for f in films:
        img = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise OSError(f"could not read {f}")
        tiles.append(cv2.resize(img, (SHEET_TILE_PX, SHEET_TILE_PX), interpolation=cv2.INTER_AREA))
    while len(tiles) % SHEET_COLUMNS:
        tiles.append(np.zeros((SHEET_TILE_PX, SHEET_TILE_PX), np.uint8))
    rows = [np.hstack(tiles[i : i + SHEET_COLUMNS]) for i in range(0, len(tiles), SHEET_COLUMNS)]
    path = out_dir / "contact-sheet.png"
    _write_png(path, np.vstack(rows))
    return path


def _labelled(img: U8, text: str) -> U8:
    out = np.ascontiguousarray(img.copy())
    scale = max(out.shape[1] / 900.0, 0.5)
    thick = max(round(2 * scale), 1)
    org = (int(16 * scale), int(40 * scale))
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(out, text, org, font, scale, 0, thick + 3, cv2.LINE_AA)
    cv2.putText(out, text, org, font, scale, 255, thick, cv2.LINE_AA)
    return out


def _write_png(path: Path, img: U8) -> None:
    if not cv2.imwrite(str(path), img):
        raise OSError(f"could not write {path}")


def _nephrotomography(
    out_dir: Path,
    scenario: Scenario,
    phantom: Phantom,
    kinetics: ContrastKinetics,
    technique: TechniqueParams,
    heights: Sequence[float],
) -> Path:
    det = DetectorModel(rows=512, cols=512, pixel_mm=0.834, seed=scenario.seed)
    chain = ImagingChain(phantom, det, seed=scenario.seed + 7)
    t = kinetics.time_s
    res = tomosynthesis(
        chain,
        KIDNEY_VIEW,
        technique,
        TOMO_SPEC,
        heights,
        kinetics.concentrations_mg_ml(),
        kinetics.volumes_ml(),
        t,
    )
    tiles = [
        _labelled(to_display(layer, det.offset_map()), f"{h / 10:g} cm")
        for layer, h in zip(res.layers, res.heights_mm, strict=True)
    ]
    panel = np.hstack(tiles)
    title = (
        f"{scenario.id}  nephrotomography {_when(t)}  {TOMO_SPEC.sweep_deg:g} deg, "
        f"{TOMO_SPEC.projections} projections"
    )
    band = np.zeros((40, panel.shape[1]), np.uint8)
    cv2.putText(band, title, (12, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.8, 255, 2, cv2.LINE_AA)
    path = out_dir / f"nephrotomo-{round(t):d}s.png"
    _write_png(path, np.vstack([band, panel]))
    return path


def _write_curves(
    out_dir: Path, rows: list[list[float]], film_times: list[float], void_s: float
) -> list[Path]:
    comps = ContrastKinetics.COMPARTMENTS
    csv_path = out_dir / "curves.csv"
    with csv_path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["time_s", *comps])
        for r in rows:
            w.writerow([f"{r[0]:g}", *(f"{v:.6g}" for v in r[1:])])
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    data = np.asarray(rows, dtype=float)
    minutes = data[:, 0] / 60.0
    fig = Figure(figsize=(10.0, 7.0), dpi=100)
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True)
    groups = (
        (top, ("plasma", "interstitial", "kidney_left", "kidney_right"), "blood, ECF, nephrogram"),
        (
            bottom,
            ("pelvis_left", "pelvis_right", "ureter_left", "ureter_right", "bladder"),
            "urine",
        ),
    )
    for ax, names, title in groups:
        for name in names:
            ax.plot(minutes, data[:, 1 + comps.index(name)], label=name, lw=1.5)
        ax.set_ylabel("iodine (mg/mL)")
        ax.set_title(title, fontsize=10, loc="left")
        ax.grid(alpha=0.3)
        for ft in film_times:
            ax.axvline(ft / 60.0, color="0.4", ls="--", lw=0.8)
        ax.axvline(void_s / 60.0, color="tab:red", ls=":", lw=1.2)
        ax.legend(fontsize=8, loc="upper right")
    for ft in film_times:
        top.annotate(
            _when(ft).removeprefix("+").replace(" ", ""),
            (ft / 60.0, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(2, -4),
            textcoords="offset points",
            fontsize=7,
            color="0.3",
            rotation=90,
            va="top",
        )
    bottom.annotate(
        "void",
        (void_s / 60.0, 0.02),
        xycoords=("data", "axes fraction"),
        xytext=(3, 2),
        textcoords="offset points",
        fontsize=8,
        color="tab:red",
    )
    bottom.set_xlabel("time after the start of the injection (min)")
    bottom.set_xlim(0.0, float(minutes[-1]))
    fig.tight_layout()
    png_path = out_dir / "curves.png"
    fig.savefig(png_path)
    return [csv_path, png_path]
