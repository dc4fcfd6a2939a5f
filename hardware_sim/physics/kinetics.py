"""Contrast kinetics for an intravenous urogram: a small compartment model.

Iodine (mg) moves between these compartments (research note §1.7 gives the sources):

====================  ======================================================================
compartment           meaning
====================  ======================================================================
``plasma``            central volume V1 = 0.05 L/kg: plasma plus rapidly mixing ECF; iodine
                      from the injector enters here.  Its concentration opacifies vessels.
``interstitial``      peripheral ECF V2 = Vd − V1, Vd = 165 mL/kg (iohexol) [S40]
``kidney_left/right`` iodine in the tubules of each kidney (the nephrogram [S32][S33]); the
                      concentration the X-ray sees adds the renal plasma space (35 % of the
                      parenchyma) at the plasma concentration.
``pelvis_left/right`` urine in calyces and renal pelvis (volume ≥ residual 3 mL; 5–10 mL is the
                      note's suggested size, unsourced)
``ureter_left/right`` urine being carried down by peristalsis (1–5 contractions/min [S48-S50])
``bladder``           urine in the bladder; emptied by :meth:`ContrastKinetics.void` or, over
                      seconds, by :meth:`ContrastKinetics.start_voiding`
``urethra``           the stream while the patient voids: the bladder's concentration while
                      urine flows, else 0 (it holds no iodine of its own: amount always 0)
====================  ======================================================================

Rate equations (C = A/V, all clearances in mL/min, t in min)::

    dA_p/dt   = R_in − (CL_d + GFR_L' + GFR_R' + CL_nr)·C_p + CL_d·C_i
    dA_i/dt   = CL_d·(C_p − C_i)                               two-compartment α/β [S38]
    dA_k/dt   = GFR'·C_p − b·A_k/τ_t                           glomerular filtration ≈ iohexol
                                                               clearance [S40][S46]; no
                                                               tubular secretion [S33]
    Q_urine   = b·h·(q_0 + w·GFR'·C_p)                          urine flow: baseline [S47] plus
                                                               osmotic diuresis of the contrast
                                                               [S23]; h = hydration
    dV_pel/dt = Q_urine − Q_pel,  Q_pel = k_pel·c·(V_pel − V_res)   (0 when obstructed)
    dA_pel/dt = b·A_k/τ_t − C_pel·Q_pel
    dV_ur/dt  = Q_pel − Q_ur,     Q_ur = c_u·V_ur/τ_u
    dA_ur/dt  = C_pel·Q_pel − C_ur·Q_ur
    dV_bl/dt  = Q_ur (both sides);  dA_bl/dt = C_ur·Q_ur (both sides)

``GFR'`` is the single-kidney GFR (× 0.6 when that side is obstructed), ``b`` the back-pressure
factor (1 normally, 0.03 when obstructed: tubular transit slows, iodine accumulates in the
tubules → dense, persistent, increasingly dense nephrogram [S33][S34]; the hydronephrotic
pelvis starts with 25 mL of unopacified urine, so it opacifies late and poorly, and nothing
drains into that ureter [S37]).  ``c`` and ``c_u`` are 1, or 0.2 while the ureteric
compression band is on (distends the pelvicalyceal systems [S11]).  CL_nr = 5 mL/min is a
small non-renal clearance (iohexol total 131 vs renal 120 mL/min [S40]); what it removes and
what is voided is counted in :attr:`ContrastKinetics.eliminated_mg`.

Integration: every transfer over a sub-step of ≤ 0.5 s moves the fraction ``1 − exp(−k·dt)`` of
its source (all outflows of a source share one exponential), so the scheme is stable for any
input rate and conserves iodine exactly (to rounding).

Calibration (tests/physics/test_kinetics.py): 70 kg, 15 g I over 40 s → plasma ≈ 3.9 mgI/mL at
1 min and ≈ 2.3 at 5 min ([S43]: 2–3 gI/L at 5 min); apparent half-lives ≈ 7 min over 5–10 min
and ≈ 73 min over 1–2 h ([S38]: α ≈ 10 min, β ≈ 90 min; ioversol 2.5–3.5 / 51–54 min [S45]);
the nephrogram (≈ 3.5 mgI/mL, tubular iodine over ~90 s of nephron transit plus renal plasma)
peaks ≈ 2.8 min after the start of the bolus [S32]; pelvic urine ≈ 35–45 mgI/mL, densest at
5–15 min [S38][S39]; ≈ 33 % of the dose has reached the urinary tract by 30 min — more than
[S43]'s 15 % for diatrizoate, as it must be with a GFR-like clearance of 120 mL/min and the
plasma levels above.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

SIDES = ("left", "right")
_VOIDING_KEYS = ("voiding_start_s", "voiding_total_ml", "voiding_duration_s", "voiding_done_ml")


@dataclass(frozen=True)
class KineticsParams:
    weight_kg: float = 70.0
    gfr_left_ml_min: float = 60.0  # single-kidney GFR; iohexol renal CL 120 mL/min total [S40]
    gfr_right_ml_min: float = 60.0
    obstructed_left: bool = False  # ureteric outflow from that side's pelvis ≈ 0 [S33][S37]
    obstructed_right: bool = False
    hydration: float = 1.0  # scales urine flow; dehydration → more concentrated urine [S23]
    bladder_start_ml: float = 50.0
    # -- plasma / ECF --------------------------------------------------------------------
    central_volume_l_kg: float = 0.05  # plasma (≈ 0.045 L/kg) + fast-mixing ECF; fits [S43]
    distribution_volume_l_kg: float = 0.165  # iohexol Vd 165 mL/kg [S40]
    intercompartmental_cl_ml_min: float = 400.0  # tuned: α t½ ≈ 7–10 min [S38][S45]
    nonrenal_cl_ml_min: float = 5.0  # iohexol CL 131 vs CL_renal 120 mL/min [S40]
    hematocrit: float = 0.45  # blood iodine = plasma × (1 − Hct) (contrast stays extracellular)
    # -- kidney ----------------------------------------------------------------------------
    kidney_volume_ml: float = 100.0  # ≈ 10×5×3 cm, ≈ 100 g each [S52]
    renal_plasma_fraction: float = 0.35  # renal plasma space of the parenchyma (assumed)
    tubular_transit_s: float = 90.0  # nephrogram peaks 1–3 min after injection [S32][S39]
    baseline_urine_ml_min: float = 0.5  # per kidney; 1–2 L/day total [S47]
    osmotic_diuresis_ml_per_mg: float = 0.02  # contrast is an osmotic diuretic [S23]; gives
    # urine ≈ 40–50 mgI/mL at normal hydration (20–100 mgI/mL target)
    # -- collecting systems, ureters, bladder ------------------------------------------------
    pelvis_residual_ml: float = 3.0  # calyces + pelvis hold 5–10 mL (note §1.7, unsourced)
    pelvis_drain_per_min: float = 1.0  # gives ≈ 7 mL at 4 mL/min urine flow
    ureter_transit_s: float = 40.0  # mean urine residence; boluses every 20–30 s [S48][S49]
    peristalsis_per_min: float = 3.0  # 1–5 contractions/min [S48][S50]
    compression_factor: float = 0.2  # drainage kept while the compression band is on [S11]
    obstructed_backpressure: float = 0.03  # tubular flow kept on an obstructed side (assumed)
    obstructed_gfr_fraction: float = 0.6  # acute obstruction lowers GFR (assumed)
    hydronephrosis_ml: float = 25.0  # unopacified urine in an obstructed pelvis at t = 0
    void_residual_ml: float = 15.0  # post-void residual urine
    void_max_flow_ml_s: float = 20.0  # Qmax of a voiding on the table [ICS; Abrams 2006]
    # Chronic kidney disease: fewer nephrons each carry a larger osmotic load and cannot
    # concentrate (isosthenuria): urine flow per filtered load rises by 1/ability, the urine
    # and the pyelogram are faint [Dyer, Radiographics 2001 "Abnormalities of the nephrogram"];
    # tubular transit slows (tubular_transit_s above), the nephrogram rises late and stays.
    concentrating_ability: float = 1.0
    max_substep_s: float = 0.5
    # First pass of the bolus: the unmixed contrast reaches the arteries after the circulation
    # time and is dispersed on the way (heart, lungs). Films at 10–14 s catch it in the
    # kidneys (arm-to-kidney ≈ 15 s to the peak) [S4][S10]; delay and dispersion assumed.
    cardiac_output_l_min: float = 5.5
    first_pass_delay_s: float = 8.0
    first_pass_dispersion_s: float = 4.0


class ContrastKinetics:
    COMPARTMENTS: tuple[str, ...] = (
        "plasma",
        "interstitial",
        "kidney_left",
        "kidney_right",
        "pelvis_left",
        "pelvis_right",
        "ureter_left",
        "ureter_right",
        "bladder",
        "urethra",
    )
    FLUID_COMPARTMENTS: tuple[str, ...] = (
        "pelvis_left",
        "pelvis_right",
        "ureter_left",
        "ureter_right",
        "bladder",
    )

    def __init__(self, params: KineticsParams) -> None:
        self.params = params
        p = params
        self._v1 = p.central_volume_l_kg * p.weight_kg * 1000.0  # mL
        self._v2 = max(p.distribution_volume_l_kg - p.central_volume_l_kg, 1e-3) * (
            p.weight_kg * 1000.0
        )
        self._t = 0.0
        self._a: dict[str, float] = dict.fromkeys(self.COMPARTMENTS, 0.0)
        self._v: dict[str, float] = {
            "pelvis_left": p.hydronephrosis_ml if p.obstructed_left else p.pelvis_residual_ml,
            "pelvis_right": p.hydronephrosis_ml if p.obstructed_right else p.pelvis_residual_ml,
            "ureter_left": 0.0,
            "ureter_right": 0.0,
            "bladder": p.bladder_start_ml,
        }
        self._compression = False
        # input-rate history (start time, rate) for the delayed first pass, and its dispersed level
        self._inputs: list[tuple[float, float]] = [(0.0, 0.0)]
        self._first_pass_mg_s = 0.0
        self.total_iodine_in_mg = 0.0
        self.eliminated_mg = 0.0  # non-renal clearance + voided urine
        self.voided_ml_total = 0.0
        self._nonrenal_mg = 0.0
        # a voiding on the table: (start time s, volume to void mL, duration s, voided so far)
        self._voiding: tuple[float, float, float, float] | None = None

    # -- time -------------------------------------------------------------------------------
    @property
    def time_s(self) -> float:
        return self._t

    @property
    def compression(self) -> bool:
        return self._compression

    def advance(self, dt_s: float, iodine_rate_mg_s: float = 0.0) -> None:
        """Integrate ``dt_s`` seconds with a constant iodine input (mg/s) into plasma."""
        if dt_s <= 0:
            return
        if iodine_rate_mg_s < 0:
            raise ValueError("iodine input rate must be ≥ 0")
        if iodine_rate_mg_s != self._inputs[-1][1]:
            self._inputs.append((self._t, iodine_rate_mg_s))
        n = max(1, math.ceil(dt_s / self.params.max_substep_s))
        h = dt_s / n
        t = self._t
        for _ in range(n):
            self._step(h, iodine_rate_mg_s)
            t += h
            self._disperse(t, h)
            if self._voiding is not None:
                self._void_step(t)
        self._t += dt_s

    def advance_to(self, t_s: float, iodine_rate_mg_s: float = 0.0) -> None:
        if t_s > self._t:
            self.advance(t_s - self._t, iodine_rate_mg_s)

    def set_compression(self, on: bool) -> None:
        self._compression = bool(on)

    def start_voiding(self) -> float:
        """The patient starts to void now (on the table, for a voiding film): the bladder
        empties to ``void_residual_ml`` over the next seconds with a bell-shaped flow
        (Q(τ) = Qmax·sin(π·τ/T), T = π·V/(2·Qmax)), the urethra carrying the bladder's urine
        while it flows.  Returns the volume that will be voided (mL)."""
        to_void = self._v["bladder"] - min(self._v["bladder"], self.params.void_residual_ml)
        if to_void <= 0:
            return 0.0
        duration = math.pi * to_void / (2.0 * self.params.void_max_flow_ml_s)
        self._voiding = (self._t, to_void, duration, 0.0)
        return to_void

    def voiding_flow_ml_s(self) -> float:
        """Urine flow through the urethra now (0 unless voiding)."""
        if self._voiding is None:
            return 0.0
        start, total, duration, _ = self._voiding
        tau = self._t - start
        if not 0.0 <= tau < duration:
            return 0.0
        return total * math.pi / (2.0 * duration) * math.sin(math.pi * tau / duration)

    def _void_step(self, t: float) -> None:
        assert self._voiding is not None
        start, total, duration, done = self._voiding
        tau = min(max(t - start, 0.0), duration)
        target = total * (1.0 - math.cos(math.pi * tau / duration)) / 2.0
        self._drain_bladder(target - done)
        self._voiding = None if tau >= duration else (start, total, duration, target)

    def _drain_bladder(self, volume_ml: float) -> float:
        v = self._v["bladder"]
        out = min(max(volume_ml, 0.0), v)
        if out <= 0.0:
            return 0.0
        iodine_out = self._a["bladder"] * out / v
        self._a["bladder"] -= iodine_out
        self._v["bladder"] = v - out
        self.eliminated_mg += iodine_out
        self.voided_ml_total += out
        return out

    def void(self) -> float:
        """Empty the bladder down to the residual volume (ending any voiding in progress);
        returns the voided volume (mL)."""
        self._voiding = None
        v = self._v["bladder"]
        residual = min(v, self.params.void_residual_ml)
        voided = v - residual
        if voided <= 0:
            return 0.0
        iodine_out = self._a["bladder"] * voided / v
        self._a["bladder"] -= iodine_out
        self._v["bladder"] = residual
        self.eliminated_mg += iodine_out
        self.voided_ml_total += voided
        return voided

    # -- observers -------------------------------------------------------------------------
    def plasma_mg_ml(self) -> float:
        return self._a["plasma"] / self._v1

    def _delayed_rate(self, t: float) -> float:
        """Injector iodine rate at ``t − first_pass_delay_s`` (piecewise constant history)."""
        when = t - self.params.first_pass_delay_s
        rate = 0.0
        for start, r in self._inputs:
            if start > when:
                break
            rate = r
        return rate

    def _disperse(self, t: float, h: float) -> None:
        tau = self.params.first_pass_dispersion_s
        target = self._delayed_rate(t)
        self._first_pass_mg_s += (target - self._first_pass_mg_s) * (1.0 - math.exp(-h / tau))
        # keep the history short: only what the delay can still reach matters
        horizon = t - self.params.first_pass_delay_s
        while len(self._inputs) > 1 and self._inputs[1][0] <= horizon:
            self._inputs.pop(0)

    def arterial_plasma_mg_ml(self) -> float:
        """Arterial plasma: the mixed central concentration plus the unmixed first pass."""
        p = self.params
        plasma_flow_ml_s = p.cardiac_output_l_min * 1000.0 / 60.0 * (1.0 - p.hematocrit)
        return self.plasma_mg_ml() + self._first_pass_mg_s / plasma_flow_ml_s

    def concentrations_mg_ml(self) -> dict[str, float]:
        """Iodine concentration (mg/mL) of each compartment's tissue or fluid."""
        p = self.params
        cp = self.arterial_plasma_mg_ml()  # what vessels and the renal vascular space hold
        out = {"plasma": cp, "interstitial": self._a["interstitial"] / self._v2}
        for side in SIDES:
            k = f"kidney_{side}"
            out[k] = self._a[k] / p.kidney_volume_ml + p.renal_plasma_fraction * cp
        for name in self.FLUID_COMPARTMENTS:
            v = self._v[name]
            out[name] = self._a[name] / v if v > 1e-6 else 0.0
        # the urethra holds the bladder's urine while the stream runs, nothing otherwise
        out["urethra"] = out["bladder"] if self.voiding_flow_ml_s() > 0.0 else 0.0
        return out

    def amounts_mg(self) -> dict[str, float]:
        """Iodine (mg) in each compartment (kidney_*: tubular iodine, excluding renal plasma)."""
        return dict(self._a)

    def volumes_ml(self) -> dict[str, float]:
        """Fluid volume (mL) of pelvis_*, ureter_* and bladder."""
        return dict(self._v)

    def ureter_fill(self, side: str) -> float:
        """Ureter content relative to its mean volume at 4 mL/min urine flow (0 = empty)."""
        if side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}")
        nominal = 4.0 * self.params.ureter_transit_s / 60.0
        return self._v[f"ureter_{side}"] / nominal

    def urinary_iodine_mg(self) -> float:
        """Iodine excreted into the collecting systems, ureters, bladder, or voided."""
        a = self._a
        inside = sum(a[k] for k in self.FLUID_COMPARTMENTS)
        return inside + self._voided_iodine_mg

    @property
    def _voided_iodine_mg(self) -> float:
        return self.eliminated_mg - self._nonrenal_mg

    def snapshot(self) -> dict[str, float]:
        """Full state, JSON-able (floats only)."""
        s: dict[str, float] = {"time_s": self._t}
        for k, v in self._a.items():
            s[f"a_{k}"] = v
        for k, v in self._v.items():
            s[f"v_{k}"] = v
        s["compression"] = 1.0 if self._compression else 0.0
        s["first_pass_mg_s"] = self._first_pass_mg_s
        for i, (start, rate) in enumerate(self._inputs):  # what the first-pass delay still sees
            s[f"input_t_{i}"] = start
            s[f"input_r_{i}"] = rate
        s["total_iodine_in_mg"] = self.total_iodine_in_mg
        s["eliminated_mg"] = self.eliminated_mg
        s["nonrenal_mg"] = self._nonrenal_mg
        s["voided_ml_total"] = self.voided_ml_total
        if self._voiding is not None:
            for key, value in zip(_VOIDING_KEYS, self._voiding, strict=True):
                s[key] = value
        return s

    @classmethod
    def restore(cls, params: KineticsParams, snapshot: dict[str, float]) -> ContrastKinetics:
        k = cls(params)
        k._t = float(snapshot["time_s"])
        for name in cls.COMPARTMENTS:
            k._a[name] = float(
                snapshot.get(f"a_{name}", 0.0) if name == "urethra" else snapshot[f"a_{name}"]
            )
        for name in cls.FLUID_COMPARTMENTS:
            k._v[name] = float(snapshot[f"v_{name}"])
        k._compression = bool(snapshot.get("compression", 0.0))
        k._first_pass_mg_s = float(snapshot.get("first_pass_mg_s", 0.0))
        inputs = []
        i = 0
        while f"input_t_{i}" in snapshot:
            inputs.append((float(snapshot[f"input_t_{i}"]), float(snapshot[f"input_r_{i}"])))
            i += 1
        k._inputs = inputs or [(0.0, 0.0)]
        k.total_iodine_in_mg = float(snapshot["total_iodine_in_mg"])
        k.eliminated_mg = float(snapshot["eliminated_mg"])
        k._nonrenal_mg = float(snapshot.get("nonrenal_mg", 0.0))
        k.voided_ml_total = float(snapshot.get("voided_ml_total", 0.0))
        if _VOIDING_KEYS[0] in snapshot:
            start, total, duration, done = (float(snapshot[key]) for key in _VOIDING_KEYS)
            k._voiding = (start, total, duration, done)
        return k

    def params_dict(self) -> dict[str, object]:
        return asdict(self.params)

    # -- integration --------------------------------------------------------------------------
    def _step(self, h: float, rate: float) -> None:
        p = self.params
        a = self._a
        v = self._v
        hm = h / 60.0  # minutes
        # input
        dose = rate * h
        a["plasma"] += dose
        self.total_iodine_in_mg += dose
        cp = a["plasma"] / self._v1
        # plasma outflows (per-minute rate constants)
        gfr = {}
        bp = {}
        for side in SIDES:
            obstructed = p.obstructed_left if side == "left" else p.obstructed_right
            g = p.gfr_left_ml_min if side == "left" else p.gfr_right_ml_min
            gfr[side] = g * (p.obstructed_gfr_fraction if obstructed else 1.0)
            bp[side] = p.obstructed_backpressure if obstructed else 1.0
        k_d = p.intercompartmental_cl_ml_min / self._v1
        k_l = gfr["left"] / self._v1
        k_r = gfr["right"] / self._v1
        k_nr = p.nonrenal_cl_ml_min / self._v1
        k_tot = k_d + k_l + k_r + k_nr
        out = a["plasma"] * (1.0 - math.exp(-k_tot * hm))
        to_i = out * k_d / k_tot
        to_l = out * k_l / k_tot
        to_r = out * k_r / k_tot
        to_nr = out - to_i - to_l - to_r
        back = a["interstitial"] * (
            1.0 - math.exp(-(p.intercompartmental_cl_ml_min / self._v2) * hm)
        )
        a["plasma"] += back - out
        a["interstitial"] += to_i - back
        self._nonrenal_mg += to_nr
        self.eliminated_mg += to_nr
        filtered = {"left": to_l, "right": to_r}
        # kidneys → pelvis → ureter → bladder
        comp = p.compression_factor if self._compression else 1.0
        for side in SIDES:
            obstructed = p.obstructed_left if side == "left" else p.obstructed_right
            kid, pel, ure = f"kidney_{side}", f"pelvis_{side}", f"ureter_{side}"
            tub_out = a[kid] * (1.0 - math.exp(-bp[side] * hm * 60.0 / p.tubular_transit_s))
            a[kid] += filtered[side] - tub_out
            load = gfr[side] * cp  # mg/min filtered
            q_urine = (
                bp[side]
                * p.hydration
                * (p.baseline_urine_ml_min + p.osmotic_diuresis_ml_per_mg * load)
            )
            if p.concentrating_ability != 1.0:
                q_urine /= max(p.concentrating_ability, 0.05)
            # pelvis: mixing tank with a residual volume, drains its excess exponentially
            a[pel] += tub_out
            v_in = q_urine * hm
            k_p = 0.0 if obstructed else p.pelvis_drain_per_min * comp
            excess = max(v[pel] - p.pelvis_residual_ml, 0.0)
            if k_p > 0:
                decay = math.exp(-k_p * hm)
                new_excess = excess * decay + q_urine / k_p * (1.0 - decay)
            else:
                new_excess = excess + v_in
            v_full = v[pel] + v_in
            v_out = max(v_full - (v[pel] - excess + new_excess), 0.0)
            i_out = a[pel] * v_out / v_full if v_full > 0 else 0.0
            v[pel] = v_full - v_out
            a[pel] -= i_out
            # ureter: peristaltic transport, mean residence τ_u
            k_u = comp * 60.0 / p.ureter_transit_s
            v_u_full = v[ure] + v_out
            a[ure] += i_out
            frac = 1.0 - math.exp(-k_u * hm)
            vu_out = v_u_full * frac
            iu_out = a[ure] * frac
            v[ure] = v_u_full - vu_out
            a[ure] -= iu_out
            v["bladder"] += vu_out
            a["bladder"] += iu_out
