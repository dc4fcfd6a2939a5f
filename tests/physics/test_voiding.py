"""Voiding on the table: flow, urethral opacification and the post-void residual."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from hardware_sim.physics import ContrastKinetics, KineticsParams, ViewGeometry

from .scenario_films import Films, bolus, patient, sample_line, scenario

PELVIS_VIEW = ViewGeometry(centre_z_mm=-200.0, field_width_mm=260.0, field_height_mm=300.0)


def _filled(residual: float = 40.0, qmax: float = 12.0) -> ContrastKinetics:
    k = ContrastKinetics(
        KineticsParams(void_residual_ml=residual, void_max_flow_ml_s=qmax, bladder_start_ml=200)
    )
    k.advance(40.0, 375.0)
    k.advance(900.0)
    return k


def test_flow_is_bell_shaped_up_to_qmax_and_leaves_the_residual() -> None:
    k = _filled()
    before = k.volumes_ml()["bladder"]
    iodine_before = k.urinary_iodine_mg()
    to_void = k.start_voiding()
    assert to_void == pytest.approx(before - 40.0)
    flows = []
    for _ in range(120):
        k.advance(0.5)
        flows.append(k.voiding_flow_ml_s())
    peak = int(np.argmax(flows))
    assert max(flows) == pytest.approx(12.0, rel=0.05)
    assert 0 < peak < len(flows) - 1 and flows[-1] == 0.0  # rises, falls, stops
    duration = math.pi * to_void / (2 * 12.0)
    assert sum(f > 0 for f in flows) * 0.5 == pytest.approx(duration, abs=1.0)
    # exactly the excess over the residual is voided; the voided iodine stays counted
    assert k.voided_ml_total == pytest.approx(to_void, abs=0.01)
    assert 40.0 <= k.volumes_ml()["bladder"] < 45.0  # the residual plus a minute's urine
    held = sum(k.amounts_mg().values()) + k.eliminated_mg
    assert held == pytest.approx(k.total_iodine_in_mg, rel=1e-9)  # iodine conserved
    assert k.urinary_iodine_mg() >= iodine_before


def test_urethra_carries_the_bladder_urine_only_while_it_flows() -> None:
    k = _filled()
    assert k.concentrations_mg_ml()["urethra"] == 0.0
    k.start_voiding()
    k.advance(3.0)
    c = k.concentrations_mg_ml()
    assert c["urethra"] == c["bladder"] > 0
    k.advance(60.0)
    assert k.concentrations_mg_ml()["urethra"] == 0.0


def test_voiding_survives_a_snapshot() -> None:
    a = _filled()
    a.start_voiding()
    a.advance(4.0)
    b = ContrastKinetics.restore(a.params, a.snapshot())
    a.advance(3.0)
    b.advance(3.0)
    assert b.voiding_flow_ml_s() == pytest.approx(a.voiding_flow_ml_s())
    assert b.volumes_ml()["bladder"] == pytest.approx(a.volumes_ml()["bladder"])


@pytest.mark.parametrize("name", ["outlet-obstruction", "normal"])
def test_voiding_film_shows_the_urethra_and_post_void_film_the_residual(name: str) -> None:
    """During micturition the urethra (male: ≈ 20 cm, female: ≈ 4 cm) is opacified along its
    course; after it, the bladder's opacified area is that of the configured residual."""
    s = scenario(name)
    p = patient(s)
    bolus(p, 900.0)
    films = Films(p, PELVIS_VIEW, px=192)
    ph = p.phantom
    neck = np.array([0.0, ph.landmarks["symphysis"][1] - 26.0, ph.z(-165.0)])
    meatus = np.asarray(ph.landmarks["urethra_meatus"])
    p.start_voiding()
    p.kinetics.advance(4.0)
    assert p.kinetics.voiding_flow_ml_s() > 0
    during = sample_line(films.opacification("urethra"), films, neck, meatus, 60)
    assert float(np.mean(during[5:-5] > 0.02)) > 0.8  # opacified along its course
    for _ in range(120):  # until the stream stops
        if p.kinetics.voiding_flow_ml_s() == 0.0:
            break
        p.kinetics.advance(1.0)
    after = sample_line(films.opacification("urethra"), films, neck, meatus, 60)
    assert float(after.max()) < 0.005
    # post-void: opacified bladder area against the shadow of the configured residual
    post = replace(PELVIS_VIEW, centre_z_mm=-140.0)
    films = Films(p, post, px=192)
    op = films.opacification("bladder")
    volume = p.kinetics.volumes_ml()["bladder"]
    assert volume == pytest.approx(s.voiding.residual_ml, abs=2.0)
    expected = np.count_nonzero(films.shadow(ph.bladder_primitive(volume)))
    measured = np.count_nonzero(op > 0.15 * float(op.max()))
    assert measured == pytest.approx(expected, rel=0.25)
