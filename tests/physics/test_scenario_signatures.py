"""Each diagnostic scenario shows its sign in its films (configs/patients/, docs/scenarios.md).

Every measurement is made on rendered films (small panels, see :mod:`.scenario_films`) and
compared either with the same patient without the finding or with the normal patient; the
expected numbers come from the geometry of the finding, not from the renderer.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from hardware_sim.physics import TechniqueParams, ViewGeometry
from hardware_sim.physics.phantom import paediatric_kidney_length_mm

from .scenario_films import Films, bolus, patient, runs_above, sample_line, scenario

KIDNEYS = ViewGeometry(centre_z_mm=100.0, field_width_mm=350.0, field_height_mm=350.0)
KUB = ViewGeometry(centre_z_mm=-20.0, field_width_mm=350.0, field_height_mm=430.0)
PYELOGRAM_S = 300.0  # 5 min: collecting systems full
NEPHROGRAM_S = 60.0


def test_duplex_kidney_has_two_pelves() -> None:
    """Along the hilar line of the left kidney the pyelogram is one stretch of urine in a
    normal kidney and two — upper- and lower-moiety pelves — in a duplex one."""
    counts = {}
    for name in ("duplex-left", "normal"):
        p = patient(scenario(name))
        bolus(p, PYELOGRAM_S)
        films = Films(p, KIDNEYS)
        op = films.opacification("pelvis_left")
        ph = p.phantom
        line = sample_line(
            op, films, ph.kidney_at("left", 18.0, 1.0, -45.0), ph.kidney_at("left", 18.0, 1.0, 45.0)
        )
        counts[name] = runs_above(line, 0.3 * float(line.max()), 4)
    assert counts == {"duplex-left": 2, "normal": 1}


def test_horseshoe_lower_poles_meet_across_the_midline() -> None:
    """The nephrogram is continuous across the midline at the level of the lower poles (the
    isthmus); a normal patient's kidneys are far apart there."""
    ratios = {}
    for name in ("horseshoe", "normal"):
        p = patient(scenario(name))
        bolus(p, NEPHROGRAM_S)
        films = Films(p, replace(KUB, centre_z_mm=40.0))
        op = films.opacification("kidney_left", "kidney_right")
        lm = p.phantom.landmarks
        z = (lm["kidney_lower_pole_left"][2] + lm["kidney_lower_pole_right"][2]) / 2.0
        y = lm["isthmus"][1] if name == "horseshoe" else lm["kidney_left"][1]
        ph = p.phantom
        poles = [ph.kidney_at(s, 0.0, 0.0, -40.0) for s in ("left", "right")]
        pole_values = [op[tuple(round(c) for c in films.pixel(q))] for q in poles]
        # from one lower pole to the other, through the midline in front of the spine
        line = np.concatenate([
            sample_line(op, films, poles[0], np.array([0.0, y, z]), 40),
            sample_line(op, films, np.array([0.0, y, z]), poles[1], 40),
        ])  # fmt: skip
        ratios[name] = float(line.min()) / float(np.mean(pole_values))
    # the normal patient's floor is the scatter of the kidneys' own change (≈ 3 %)
    assert ratios["horseshoe"] > 0.15
    assert ratios["normal"] < 0.08


def test_pelvic_kidney_lies_below_the_iliac_crest() -> None:
    """The right kidney's nephrogram lies wholly below the iliac crests (z = 0) and the right
    renal fossa is empty; a normal right kidney lies above the crest."""
    crest_row, tops = {}, {}
    for name in ("pelvic-kidney", "normal"):
        p = patient(scenario(name))
        bolus(p, NEPHROGRAM_S)
        films = Films(p, KUB)
        op = films.opacification("kidney_right")
        rows, _ = np.nonzero(op > 0.3 * float(op.max()))
        tops[name] = float(np.percentile(rows, 2))  # upper pole (rows run caudally)
        crest_row[name] = films.pixel((-85.0, p.phantom.y_spine, 0.0))[0]
    assert tops["pelvic-kidney"] > crest_row["pelvic-kidney"]
    assert tops["normal"] < crest_row["normal"] - 20


def test_renal_pelvis_tumour_lowers_opacified_pelvis_area_by_its_share() -> None:
    """The filling defect removes from the opacified pelvis the share of the pelvis's shadow
    that the tumour's shadow covers (computed from the two solids' projected outlines)."""
    areas, expected = {}, 0.0
    for with_tumour in (True, False):
        s = scenario("pelvis-tumour")
        p = patient(s if with_tumour else s.model_copy(update={"findings": []}))
        bolus(p, PYELOGRAM_S)
        films = Films(p, KIDNEYS, px=320)
        op = films.opacification("pelvis_left")
        prims = p.phantom.collecting_system("left", p.kinetics.volumes_ml()["pelvis_left"])
        pelvis = films.shadow(next(q for q in prims if q.name == "renal pelvis"))
        areas[with_tumour] = int(np.count_nonzero(pelvis & (op > 0.25 * float(op.max()))))
        if with_tumour:
            tumour = films.shadow(next(q for q in prims if q.name == "pelvis tumour"))
            expected = np.count_nonzero(tumour & pelvis) / np.count_nonzero(pelvis)
    assert 0.15 < expected < 0.8  # the scenario's tumour is a real share of the pelvis
    lost = 1.0 - areas[True] / areas[False]
    assert lost == pytest.approx(expected, abs=0.1)


def test_bladder_tumour_is_a_filling_defect_of_its_depth_share() -> None:
    """Through the tumour's centre the bladder's opacification falls by the tumour's share of
    the urine depth there (linear in iodine: the log subtraction)."""
    values = {}
    geometry = replace(KUB, centre_z_mm=-150.0, field_height_mm=260.0)
    for with_tumour in (True, False):
        s = scenario("bladder-tumour")
        p = patient(s if with_tumour else s.model_copy(update={"findings": []}))
        bolus(p, 900.0)
        films = Films(p, geometry, px=256)
        op = films.opacification("bladder")
        prims = p.phantom.bladder_primitives(p.kinetics.volumes_ml()["bladder"])
        if with_tumour:
            bladder, tumour = prims
            centre = tumour.centre
            a, b, _ = bladder.semi_axes
            dx = (centre[0] - bladder.centre[0]) / a
            depth = 2.0 * b * np.sqrt(max(1.0 - dx * dx, 0.0))
            share = 2.0 * tumour.semi_axes[1] / depth
        r, col = (round(v) for v in films.pixel(centre))
        values[with_tumour] = float(np.mean(op[r - 1 : r + 2, col - 1 : col + 2]))
    assert 0.2 < share < 0.9
    assert 1.0 - values[True] / values[False] == pytest.approx(share, abs=0.15)


def test_cyst_pushes_the_calyces_out_of_its_outline() -> None:
    """No calyx opacifies inside the cyst's outline; without the cyst calyces lie there."""
    inside = {}
    for with_cyst in (True, False):
        s = scenario("renal-cyst")
        p = patient(s if with_cyst else s.model_copy(update={"findings": []}))
        bolus(p, PYELOGRAM_S)
        films = Films(p, KIDNEYS, px=256)
        op = films.opacification("pelvis_left")
        cyst = s.findings[0]
        ph = p.phantom
        centre = np.asarray(ph.finding_centre_mm(ph.build.findings[0])) if with_cyst else None
        if centre is None:
            centre = ph.kidney_at("left", -4.0, 0.0, 30.0) * ph.scale
        r_px = (cyst.diameter_mm / 2.0 - 4.0) / (430.0 / films.px)
        rc = films.pixel(centre)
        yy, xx = np.mgrid[: films.px, : films.px]
        disk = (yy - rc[0]) ** 2 + (xx - rc[1]) ** 2 <= r_px**2
        inside[with_cyst] = float(np.mean(op[disk] > 0.25 * float(op.max())))
    assert inside[True] < 0.03
    assert inside[False] > 0.1


def test_ckd_nephrogram_peaks_later_and_fainter() -> None:
    """Parenchymal enhancement over the nephrographic phase (from 1 min; the 15-s film's
    first-pass blush is the vascular phase) at the lateral kidney, off the calyces: in chronic
    kidney disease it peaks minutes later and lower than in the normal patient."""
    times = (60.0, 120.0, 180.0, 300.0, 480.0, 720.0, 1200.0)
    peaks = {}
    for name in ("reduced-function", "normal"):
        p = patient(scenario(name))
        films = Films(p, KIDNEYS, px=96)
        curve = []
        for t in times:
            bolus(p, t)
            en = films.enhancement()
            r, c = (round(v) for v in films.pixel(p.phantom.landmarks["kidney_lateral_left"]))
            curve.append(float(np.mean(en[r - 1 : r + 2, c - 1 : c + 2])))
        i = int(np.argmax(curve))
        peaks[name] = (times[i], curve[i])
    (t_ckd, v_ckd), (t_norm, v_norm) = peaks["reduced-function"], peaks["normal"]
    assert t_ckd >= t_norm + 120.0
    assert v_ckd < 0.75 * v_norm


def test_ckd_pyelogram_is_dilute() -> None:
    """Poor concentration: the pelvic urine carries under half the normal iodine at 5–15 min."""
    dens = {}
    for name in ("reduced-function", "normal"):
        p = patient(scenario(name))
        best = 0.0
        for t in (300.0, 600.0, 900.0):
            bolus(p, t)
            best = max(best, p.kinetics.concentrations_mg_ml()["pelvis_left"])
        dens[name] = best
    assert dens["reduced-function"] < 0.5 * dens["normal"]


def test_child_kidneys_follow_the_growth_chart() -> None:
    """A 12-kg, 84-cm child is accepted; its kidneys measure (nephrogram, magnification
    removed) the growth chart's length for its height, its spine the scaled adult's."""
    s = scenario("paediatric")
    p = patient(s)
    bolus(p, NEPHROGRAM_S, ml=2.0 * s.build.weight_kg, flow=1.0)  # 2 mL/kg
    geometry = replace(KUB, centre_z_mm=20.0, field_height_mm=300.0)
    films = Films(p, geometry, px=256, technique=TechniqueParams(kvp=65.0, mas=4.0))
    op = films.opacification("kidney_left")
    mask = op > 0.3 * float(op.max())
    rows = np.nonzero(mask.any(axis=1))[0]
    lm = p.phantom.landmarks
    centre = np.asarray(lm["kidney_left"])
    # magnification at the kidney: the projected length of a known 10-mm vertical segment
    r0, _ = films.pixel(centre)
    r1, _ = films.pixel(centre + np.array([0.0, 0.0, 10.0]))
    mm_per_row = 10.0 / abs(r0 - r1)
    tilt = np.cos(np.radians(16.0))
    length = (rows[-1] - rows[0] + 1) * mm_per_row / tilt
    assert length == pytest.approx(paediatric_kidney_length_mm(s.build.height_cm), rel=0.2)
    adult = patient(scenario("normal")).phantom.landmarks
    l1_to_l4 = lm["L1"][2] - lm["L4"][2]
    assert l1_to_l4 == pytest.approx(
        (adult["L1"][2] - adult["L4"][2]) * s.build.height_cm / 168.0, rel=0.05
    )
