"""Physiology targets of the contrast-kinetics model (research note §1.6–1.7).

Reference scenario: 70 kg, 50 mL of 300 mgI/mL (15 g iodine) delivered over 40 s.
"""

from __future__ import annotations

import json
import math

import pytest

from hardware_sim.physics import ContrastKinetics, KineticsParams

DOSE_MG = 50.0 * 300.0
BOLUS_S = 40.0


def bolus(params: KineticsParams | None = None) -> ContrastKinetics:
    k = ContrastKinetics(params or KineticsParams())
    k.advance(BOLUS_S, DOSE_MG / BOLUS_S)
    return k


def mixed_plasma(k: ContrastKinetics, times_s: list[float]) -> list[float]:
    out = []
    for t in times_s:
        k.advance_to(t)
        out.append(k.plasma_mg_ml())
    return out


def test_first_pass_of_a_fast_bolus_opacifies_the_kidneys_early() -> None:
    # 50 mL of 300 mgI/mL at 4 mL/s: the unmixed bolus reaches the renal arteries after the
    # circulation time, so a film at 10–14 s shows the kidneys [S4][S10]; it is gone by 1 min.
    k = ContrastKinetics(KineticsParams())
    rate = 4.0 * 300.0
    k.advance(12.5, rate)
    times = [float(t) for t in range(13, 120)]
    kid = curve(k, "kidney_left", times)
    art = curve(ContrastKinetics(KineticsParams()), "plasma", [1.0])  # nothing given: zero
    assert art == [0.0]
    peak_t = times[kid.index(max(kid))]
    assert 14.0 <= peak_t <= 30.0
    assert (
        max(kid) > 2.0 * kid[times.index(60.0)] * 0.9
    )  # blush clearly above the early tubular phase
    k2 = ContrastKinetics(KineticsParams())
    k2.advance(12.0, rate)
    c = k2.concentrations_mg_ml()
    assert c["plasma"] > 2.0 * k2.plasma_mg_ml()  # arterial first pass ≫ mixed plasma at 12 s
    assert c["kidney_left"] > 2.0  # ≈ 9 % contrast for 3 cm of kidney (research note §5.2)


def test_first_pass_survives_snapshot_restore() -> None:
    k = ContrastKinetics(KineticsParams())
    k.advance(10.0, 1200.0)
    r = ContrastKinetics.restore(KineticsParams(), k.snapshot())
    k.advance(5.0, 1200.0)
    r.advance(5.0, 1200.0)
    assert r.concentrations_mg_ml()["plasma"] == pytest.approx(
        k.concentrations_mg_ml()["plasma"], rel=0.05
    )


def curve(k: ContrastKinetics, name: str, times_s: list[float]) -> list[float]:
    out = []
    for t in times_s:
        k.advance_to(t)
        out.append(k.concentrations_mg_ml()[name])
    return out


def test_compartments_named() -> None:
    needed = {
        "plasma",
        "interstitial",
        "kidney_left",
        "kidney_right",
        "pelvis_left",
        "pelvis_right",
        "ureter_left",
        "ureter_right",
        "bladder",
    }
    assert needed <= set(ContrastKinetics.COMPARTMENTS)
    k = ContrastKinetics(KineticsParams())
    assert set(k.concentrations_mg_ml()) == set(ContrastKinetics.COMPARTMENTS)
    assert set(k.amounts_mg()) == set(ContrastKinetics.COMPARTMENTS)


def test_plasma_levels_at_1_and_5_min() -> None:
    # target ≈ 2–4 mgI/mL at 1 min; [S43] 2–3 gI/L at 5 min for 1 mL/kg (21 g): for our 15 g
    # accept 1–3 mgI/mL.
    # [S43] measures venous samples: the mixed plasma, not the arterial first pass
    k = bolus()
    c1, c5 = mixed_plasma(k, [60.0, 300.0])
    assert 2.0 <= c1 <= 4.2
    assert 1.0 <= c5 <= 3.0
    assert c5 < c1


def test_plasma_alpha_and_beta_half_lives() -> None:
    # [S38]: α ≈ 10 min, β ≈ 90 min; [S45] (ioversol) β 51–54 min. Apparent half-lives from
    # log-slopes: early (5→10 min) within 5–15 min, late (60→120 min) within 55–100 min.
    k = bolus()
    c5, c10, c60, c120 = mixed_plasma(k, [300.0, 600.0, 3600.0, 7200.0])
    t_alpha = 5.0 * math.log(2.0) / math.log(c5 / c10)
    t_beta = 60.0 * math.log(2.0) / math.log(c60 / c120)
    assert 5.0 <= t_alpha <= 15.0
    assert 55.0 <= t_beta <= 100.0
    assert t_beta > 3 * t_alpha


def test_nephrogram_peaks_within_1_to_3_min() -> None:
    # the tubular nephrogram [S32][S33], after the first-pass vascular blush has passed
    k = bolus()
    times = [float(t) for t in range(70, 900)]
    kid = curve(k, "kidney_left", times)
    t_peak = times[kid.index(max(kid))]
    assert 60.0 <= t_peak <= 180.0
    # visible nephrogram: above the ≈ 0.7 mgI/mL filtrate threshold [S23] and denser than plasma
    # would be on its own
    assert max(kid) > 1.5
    assert kid[times.index(900.0 - 1)] < max(kid)


def test_collecting_system_is_tens_of_mg_ml_and_best_at_5_to_15_min() -> None:
    k = bolus()
    times = [float(t) for t in range(60, 3601, 30)]
    pel = curve(k, "pelvis_right", times)
    for t in (300.0, 600.0, 900.0):
        assert 20.0 <= pel[times.index(t)] <= 100.0  # urine 20–100 mgI/mL
    t_best = times[pel.index(max(pel))]
    assert 300.0 <= t_best <= 900.0  # iohexol optimal 5–15 min [S39], iothalamate 3–8 [S38]
    assert pel[times.index(3600.0)] < max(pel)


def test_bladder_accumulates_until_void() -> None:
    k = bolus()
    last_mg, last_ml = 0.0, 0.0
    for t in range(60, 1801, 60):
        k.advance_to(float(t))
        mg, ml = k.amounts_mg()["bladder"], k.volumes_ml()["bladder"]
        assert mg >= last_mg
        assert ml >= last_ml
        last_mg, last_ml = mg, ml
    before = k.amounts_mg()["bladder"]
    voided = k.void()
    assert voided > 50.0
    assert voided == pytest.approx(last_ml - k.volumes_ml()["bladder"])
    assert 10.0 <= k.volumes_ml()["bladder"] <= 20.0  # residual
    assert k.amounts_mg()["bladder"] < 0.2 * before
    # concentration is unchanged by voiding (the bladder is well mixed)
    k2 = bolus()
    k2.advance_to(1800.0)
    assert k.concentrations_mg_ml()["bladder"] == pytest.approx(
        k2.concentrations_mg_ml()["bladder"], rel=1e-9
    )


def test_fraction_in_urine_at_30_min() -> None:
    # [S43]: 15 % of a diatrizoate dose in urine by 30 min. Iohexol's renal clearance of
    # 120 mL/min [S40] with plasma at 1–3 mgI/mL filters ≈ 30 % in 30 min, so the tolerance is
    # 10–40 % (and > 50 % by 3 h [S43]).
    k = bolus()
    k.advance_to(1800.0)
    frac30 = k.urinary_iodine_mg() / DOSE_MG
    assert 0.10 <= frac30 <= 0.40
    k.advance_to(3 * 3600.0)
    assert k.urinary_iodine_mg() / DOSE_MG > 0.5


def test_left_obstruction() -> None:
    k = bolus(KineticsParams(obstructed_left=True))
    k.advance_to(300.0)
    c5 = k.concentrations_mg_ml()
    k.advance_to(900.0)
    c15 = k.concentrations_mg_ml()
    # dense, persistent, increasingly dense nephrogram [S33][S34]
    assert c15["kidney_left"] >= c5["kidney_left"]
    assert c15["kidney_left"] > 2.0 * c15["kidney_right"]
    # no ureter on that side [S37]
    assert k.amounts_mg()["ureter_left"] < 1e-9
    assert k.volumes_ml()["ureter_left"] < 1e-9
    # late/poor collecting-system filling
    assert c5["pelvis_left"] < 0.25 * c5["pelvis_right"]
    assert c15["pelvis_left"] < 0.5 * c15["pelvis_right"]
    # the normal side still drains into the bladder
    assert k.amounts_mg()["ureter_right"] > 0.0
    assert k.amounts_mg()["bladder"] > 0.0


def test_mass_conservation() -> None:
    k = ContrastKinetics(KineticsParams(obstructed_right=True, hydration=0.7))
    k.advance(25.0, 400.0)
    k.advance(1e-3, 2000.0 / 1e-3)  # a whole 2 g bolus in a millisecond
    k.advance_to(300.0)
    k.set_compression(True)
    k.advance_to(600.0)
    k.set_compression(False)
    k.advance_to(1200.0)
    k.void()
    k.advance(2400.0)
    total = sum(k.amounts_mg().values()) + k.eliminated_mg
    assert total == pytest.approx(k.total_iodine_in_mg, rel=1e-6)
    assert k.total_iodine_in_mg == pytest.approx(25.0 * 400.0 + 2000.0)
    assert all(v >= 0.0 for v in k.amounts_mg().values())
    assert all(v >= 0.0 for v in k.volumes_ml().values())


def test_large_steps_match_small_steps() -> None:
    a = bolus()
    b = bolus()
    a.advance(3600.0)
    for _ in range(3600):
        b.advance(1.0)
    assert a.time_s == pytest.approx(b.time_s)
    for name in ContrastKinetics.COMPARTMENTS:
        assert a.amounts_mg()[name] == pytest.approx(b.amounts_mg()[name], rel=1e-6, abs=1e-9)


def test_advance_to_past_is_noop() -> None:
    k = bolus()
    k.advance_to(100.0)
    snap = k.snapshot()
    k.advance_to(50.0)
    k.advance_to(100.0)
    assert k.snapshot() == snap


def test_snapshot_restore_round_trip() -> None:
    params = KineticsParams(obstructed_left=True)
    k = bolus(params)
    k.advance_to(400.0)
    k.set_compression(True)
    snap = json.loads(json.dumps(k.snapshot()))
    r = ContrastKinetics.restore(params, snap)
    assert r.time_s == k.time_s
    assert r.total_iodine_in_mg == k.total_iodine_in_mg
    k.advance(300.0)
    r.advance(300.0)
    assert r.amounts_mg() == k.amounts_mg()
    assert r.volumes_ml() == k.volumes_ml()


def test_compression_distends_the_collecting_systems() -> None:
    free = bolus()
    comp = bolus()
    free.advance_to(300.0)
    comp.advance_to(300.0)
    comp.set_compression(True)
    free.advance_to(600.0)
    comp.advance_to(600.0)
    assert comp.volumes_ml()["pelvis_left"] > 1.5 * free.volumes_ml()["pelvis_left"]
    assert comp.amounts_mg()["pelvis_left"] > free.amounts_mg()["pelvis_left"]
    assert comp.amounts_mg()["bladder"] < free.amounts_mg()["bladder"]


def test_dehydration_concentrates_urine() -> None:
    wet = bolus(KineticsParams(hydration=1.0))
    dry = bolus(KineticsParams(hydration=0.5))
    wet.advance_to(600.0)
    dry.advance_to(600.0)
    assert (
        dry.concentrations_mg_ml()["pelvis_left"] > 1.3 * wet.concentrations_mg_ml()["pelvis_left"]
    )
    assert dry.volumes_ml()["bladder"] < wet.volumes_ml()["bladder"]


def test_ureter_fill_and_input_validation() -> None:
    k = bolus()
    k.advance_to(600.0)
    assert k.ureter_fill("left") > 0.0
    with pytest.raises(ValueError):
        k.ureter_fill("middle")
    with pytest.raises(ValueError):
        k.advance(1.0, -1.0)
