"""Fast synthesis, per frame: background cache, compartment iodine in windows and pixel lists,
the change of primary, variance and scatter they make (see :mod:`.imaging`)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import cv2
import numpy as np
import numpy.typing as npt

from ._geometry import Parts, UreterPart, ViewMaps
from ._iodine import (
    PERISTALSIS_PER_MIN,
    URETER_BASELINE_FILL,
    URETER_BOLUS_HALF_LENGTH_MM,
    URETER_BOLUS_SPEED_MM_S,
    VOLUME_COMPARTMENTS,
    ureter_amp,
    volume_map,
)
from ._layout import build_layout
from ._lru import trim
from ._params import TechniqueParams
from ._scatter import scatter, scatter_blocks, scatter_small, scatter_spread
from ._synthesis import (
    BACKGROUND_COMPARTMENTS,
    GAUSS_NODES,
    Background,
    Dense,
    Layout,
    Synthesis,
)
from .detector import DetectorModel, light_spread_kernel
from .phantom import Phantom

F32 = npt.NDArray[np.float32]

BACKGROUND_CACHE_SIZE = 2  # backgrounds kept per (view, technique)


class FastPath:
    """The per-frame state of the fast path of an :class:`~.imaging.ImagingChain`: reusable
    buffers and light-spread kernels (not for concurrent use by threads)."""

    def __init__(
        self,
        phantom: Phantom,
        detector: DetectorModel,
        scatter_to_primary: float,
        noise_bank: bool,
    ) -> None:
        self.phantom = phantom
        self.detector = detector
        self.scatter_to_primary = scatter_to_primary
        self.noise_bank = noise_bank
        self.buffers: dict[str, F32] = {}
        #: the panel-resolution detail of the last :meth:`grid` call's background (or None)
        self.detail: F32 | None = None
        self.kernels: dict[float, F32 | None] = {}

    def grid_blur_sigma(self, vm: ViewMaps) -> float:
        det = self.detector
        return det.lsf_sigma_px * det.pixel_mm / vm.grid_px_mm

    def background(
        self, vm: ViewMaps, syn: Synthesis, conc: Mapping[str, float], mas: float
    ) -> Background:
        q = []
        for comp in BACKGROUND_COMPARTMENTS:
            step = syn.steps[comp]
            c = max(float(conc.get(comp, 0.0)), 0.0)
            q.append(round(c / step) if math.isfinite(step) else 0)
        key = (q[0], q[1], mas)
        bg = syn.backgrounds.get(key)
        if bg is not None:
            syn.backgrounds.move_to_end(key)
            return bg
        shape = (vm.grid_rows, vm.grid_cols)
        t_bg = np.zeros(shape, np.float32)
        for comp, qc in zip(BACKGROUND_COMPARTMENTS, q, strict=True):
            if qc > 0:
                t_bg += np.float32(0.1 * qc * syn.steps[comp]) * vm.iodine[comp]
        amp = np.empty_like(syn.amp)
        var = np.empty_like(syn.var)
        kerma = np.empty_like(syn.kerma)
        f = np.empty(shape, np.float32)
        for j in range(GAUSS_NODES):
            np.multiply(syn.negx[j], t_bg, out=f)
            np.exp(f, out=f)
            f *= np.float32(mas)
            np.multiply(syn.amp[j], f, out=amp[j])
            np.multiply(syn.var[j], f, out=var[j])
            np.multiply(syn.kerma[j], f[vm.roi], out=kerma[j])
        primary = amp.sum(axis=0, dtype=np.float32)
        var_primary = np.maximum(var.sum(axis=0, dtype=np.float32), np.float32(0.0))
        sg = self.grid_blur_sigma(vm)
        signal = primary.copy()
        if sg > 0:
            signal = np.asarray(
                cv2.GaussianBlur(primary, (0, 0), sg, borderType=cv2.BORDER_REFLECT), np.float32
            )
        detail = None
        if syn.detail_blurred is not None:
            rows, cols = syn.detail_blurred.shape
            up = cv2.resize(signal, (cols, rows), interpolation=cv2.INTER_LINEAR)
            detail = np.asarray(up * syn.detail_blurred, np.float32)
        variance = var_primary.copy()
        if self.scatter_to_primary > 0:
            sc = scatter(vm, primary, syn.scatter_scale)
            signal += sc
            variance += sc * np.float32(syn.scatter_energy_kev)
        if self.noise_bank:  # the electronic noise comes from the same pre-blurred bank
            variance += np.float32(self.detector.folded_read_variance_kev2())
        bg = Background(
            amp=amp,
            var=var,
            kerma=kerma,
            kerma_mean=float(kerma.sum(axis=0, dtype=np.float64).mean()),
            primary=primary,
            var_primary=var_primary,
            signal=signal,
            detail=detail,
            variance=variance,
        )
        syn.backgrounds[key] = bg
        trim(syn.backgrounds, BACKGROUND_CACHE_SIZE)
        return bg

    def parts(self, vm: ViewMaps) -> Parts:
        if vm.parts is not None:
            return vm.parts
        fixed: dict[str, tuple[tuple[slice, slice], F32]] = {}
        ureters: dict[str, UreterPart] = {}
        for comp, lmap in vm.iodine.items():
            if comp in BACKGROUND_COMPARTMENTS:
                continue
            rows = np.nonzero(lmap.any(axis=1))[0]
            cols = np.nonzero(lmap.any(axis=0))[0]
            if rows.size == 0:
                continue
            r0, c0 = int(rows[0]), int(cols[0])
            box = (slice(r0, int(rows[-1]) + 1), slice(c0, int(cols[-1]) + 1))
            crop = np.ascontiguousarray(lmap[box])
            arc = vm.ureter_arc.get(comp)
            if comp.startswith("ureter_") and arc is not None:
                with np.errstate(divide="ignore", invalid="ignore"):
                    s = np.where(crop > 1e-3, arc[box] / np.maximum(crop, 1e-6), 0.0).astype(
                        np.float32
                    )
                sel = crop > 0
                rr, cc = np.nonzero(sel)
                base = URETER_BASELINE_FILL + 0.5 * np.exp(-s / 25.0)
                ureters[comp] = UreterPart(
                    box=box,
                    rows=(rr + r0).astype(np.intp),
                    cols=(cc + c0).astype(np.intp),
                    length=crop[sel],
                    arc_time=(s / URETER_BOLUS_SPEED_MM_S)[sel],
                    base=base[sel].astype(np.float32),
                )
            else:
                fixed[comp] = (box, crop)
        vm.parts = Parts(fixed, ureters)
        return vm.parts

    def compartments(
        self,
        vm: ViewMaps,
        conc: Mapping[str, float],
        volumes: Mapping[str, float] | None,
        time_s: float,
    ) -> tuple[Dense, dict[str, F32]]:
        """The compartments' iodine (mg/cm², as :func:`._iodine.iodine_areal_mg_cm2` without the
        background): dense ones as (bounding box, map over it), ureters as values at their
        pixels (:class:`UreterPart`)."""
        parts = self.parts(vm)
        vols = volumes or {}
        dense: Dense = []
        thin: dict[str, F32] = {}
        for comp, (box, crop) in parts.fixed.items():
            c = float(conc.get(comp, 0.0))
            if c > 0.0:
                dense.append((box, np.float32(0.1 * c) * crop))
        period = 60.0 / PERISTALSIS_PER_MIN
        sigma_t = URETER_BOLUS_HALF_LENGTH_MM / URETER_BOLUS_SPEED_MM_S
        for comp, u in parts.ureters.items():
            c = float(conc.get(comp, 0.0))
            if c <= 0.0:
                continue
            phase = 0.0 if comp.endswith("left") else 0.37 * period
            tau = (time_s - phase - u.arc_time) % period
            tau = np.minimum(tau, period - tau)
            fill = np.exp(-0.5 * (tau / sigma_t) ** 2) + u.base
            fill *= u.length
            fill *= np.float32(0.1 * c * ureter_amp(self.phantom, comp, vols))
            thin[comp] = fill
        for comp, default_ml in VOLUME_COMPARTMENTS.items():
            c = float(conc.get(comp, 0.0))
            if c <= 0.0:
                continue
            entry = volume_map(self.phantom, vm, comp, float(vols.get(comp, default_ml)))
            if entry is not None:
                box, ch = entry
                dense.append((box, np.float32(0.1 * c) * ch))
        return dense, thin

    def scratch(self, name: str, shape: tuple[int, ...]) -> F32:
        """A reusable float32 buffer (zero-filled when first made)."""
        buf = self.buffers.get(name)
        if buf is None or buf.shape != shape:
            buf = np.zeros(shape, np.float32)
            self.buffers[name] = buf
        return buf

    def grid(
        self,
        vm: ViewMaps,
        syn: Synthesis,
        technique: TechniqueParams,
        conc: Mapping[str, float],
        volumes: Mapping[str, float] | None,
        time_s: float,
    ) -> tuple[F32, F32, float]:
        """(mean keV after the light spread, noise σ keV, detector kerma µGy) on the grid.

        The two arrays are reused buffers, valid until the next call."""
        gr, gc = vm.grid_rows, vm.grid_cols
        bg = self.background(vm, syn, conc, float(technique.mas))
        self.detail = bg.detail
        sig = self.scratch("sig", (gr, gc))
        var = self.scratch("var", (gr, gc))
        kerma = bg.kerma_mean
        dense, thin = self.compartments(vm, conc, volumes, time_s)
        if dense or thin:
            kerma = self.add_compartments(vm, syn, bg, dense, thin, sig, var)
        else:
            np.copyto(sig, bg.signal)
            np.copyto(var, bg.variance)
        # var ≥ 0 in exact arithmetic (background ≥ 0, clamped changes, the scatter change is
        # at most the background scatter); with the bank it also holds the electronic noise's
        # variance, far above rounding, else clamp (sqrt of a rounding-negative would be NaN)
        if not (self.noise_bank and self.detector.electronic_noise_e > 0):
            np.maximum(var, np.float32(0.0), out=var)
        cv2.sqrt(var, var)
        return sig, var, kerma

    def add_compartments(
        self,
        vm: ViewMaps,
        syn: Synthesis,
        bg: Background,
        dense: Dense,
        thin: dict[str, F32],
        sig: F32,
        var: F32,
    ) -> float:
        """sig, var ← the background plus the change of primary, variance and scatter that the
        compartment iodine makes; returns the detector kerma."""
        gr, gc = vm.grid_rows, vm.grid_cols
        lay = build_layout(vm, syn, bg, dense, list(thin), self.parts(vm), self.grid_kernel(vm))
        # iodine in the windows
        for win in lay.windows:
            win.t.fill(0.0)
        for k, ((rs, cs), val) in zip(lay.dense_window, dense, strict=True):
            win = lay.windows[k]
            r0, c0 = win.rect[0].start, win.rect[1].start
            win.t[rs.start - r0 : rs.stop - r0, cs.start - c0 : cs.stop - c0] += val
        thin_t = []
        for part in lay.thin:
            vals = thin[part.comp]
            for k, pos, local in part.routes:
                lay.windows[k].t.reshape(-1)[local] += vals[pos]
            thin_t.append(vals[part.keep])
        # the response: changes of primary and variance, Σ_j A'_j e^(−x_j t) − Σ_j A'_j
        kerma = bg.kerma_mean
        zero = np.float32(0.0)
        for win in lay.windows:
            t, dp, dv, e = win.t, win.dp, win.dv, win.e
            np.copyto(dp, win.neg_primary)
            dv.fill(0.0)
            for j in range(GAUSS_NODES):
                cv2.multiply(win.negx[j], t, dst=e)
                cv2.exp(e, e)
                cv2.accumulateProduct(win.amp[j], e, dp)
                cv2.accumulateProduct(win.var[j], e, dv)
            np.maximum(dv, zero, out=dv)  # (variance weights may be < 0: keep the sum ≥ 0)
            np.add(dv, win.neg_var_primary, out=dv)
            if win.kerma_roi is not None:  # detector kerma where the window meets the ROI
                in_win, in_roi = win.kerma_roi
                for j in range(GAUSS_NODES):
                    att = np.exp(win.negx[j][in_win] * t[in_win]) - np.float32(1.0)
                    change = float(np.sum(bg.kerma[j][in_roi] * att, dtype=np.float64))
                    kerma += change / bg.kerma[0].size
        thin_dp = []
        thin_dv = []
        for part, t in zip(lay.thin, thin_t, strict=True):
            dp, dv = part.neg_primary.copy(), np.zeros_like(t)
            for j in range(GAUSS_NODES):
                e = np.exp(part.negx[j] * t)
                dp += part.amp[j] * e
                dv += part.var[j] * e
                if part.kerma is not None:
                    pos, _, kw = part.kerma
                    change = float(np.sum(kw[j] * (e[pos] - 1.0), dtype=np.float64))
                    kerma += change / bg.kerma[0].size
            np.maximum(dv, zero, out=dv)
            dv += part.neg_var_primary
            thin_dp.append(dp)
            thin_dv.append(dv)
        # scatter is linear in the primary: add the scatter of its change
        if self.scatter_to_primary > 0:
            up = self.scratch("scatter_up", (gr, gc))
            small = self.scatter_of_change(vm, lay, thin_dp)
            small *= np.float32(syn.scatter_scale)
            cv2.resize(small, (gc, gr), dst=up, interpolation=cv2.INTER_LINEAR)
            fr, fc = self.field_box(vm)  # as the exact path: no scatter outside the field
            up[: fr.start] = 0.0
            up[fr.stop :] = 0.0
            up[:, : fc.start] = 0.0
            up[:, fc.stop :] = 0.0
            cv2.add(bg.signal, up, dst=sig)
            cv2.scaleAdd(up, syn.scatter_energy_kev, bg.variance, dst=var)
        else:
            np.copyto(sig, bg.signal)
            np.copyto(var, bg.variance)
        # add the changes; the mean's with the light spread (the background's is cached)
        kernel = self.grid_kernel(vm)
        for win in lay.windows:
            var[win.rect] += win.dv
            dp = win.dp
            if kernel is not None:
                cv2.sepFilter2D(dp, -1, kernel, kernel, dst=win.e, borderType=cv2.BORDER_CONSTANT)
                dp = win.e
            sig[win.rect] += dp
        flat_sig, flat_var = sig.reshape(-1), var.reshape(-1)
        for part, dp, dv in zip(lay.thin, thin_dp, thin_dv, strict=True):
            flat_var[part.index] += dv
            if kernel is None:
                flat_sig[part.index] += dp
                continue
            h, w = part.box[0].stop - part.box[0].start, part.box[1].stop - part.box[1].start
            if h == 0 or w == 0:  # all of this ureter lies inside the windows (a short one)
                continue
            src = self.scratch("thin_src", (gr * gc,))[: h * w]
            src.fill(0.0)
            src[part.local] = dp
            out = self.scratch("thin_out", (gr * gc,))[: h * w].reshape(h, w)
            cv2.sepFilter2D(
                src.reshape(h, w), -1, kernel, kernel, dst=out, borderType=cv2.BORDER_CONSTANT
            )
            sig[part.box] += out
        return kerma

    def grid_kernel(self, vm: ViewMaps) -> F32 | None:
        """The light spread's kernel on the ray grid (cached)."""
        sigma = self.grid_blur_sigma(vm)
        key = round(sigma, 9)
        if key not in self.kernels:
            self.kernels[key] = light_spread_kernel(sigma)
        return self.kernels[key]

    def scatter_of_change(self, vm: ViewMaps, lay: Layout, thin_dp: list[F32]) -> F32:
        """:func:`._scatter.scatter_small` of the primary's change (windows + thin parts)."""
        gr, gc = vm.grid_rows, vm.grid_cols
        fy, fx = scatter_blocks(gr, gc)
        if not (fy and fx):  # uneven blocks: reduce the whole grid
            full = np.zeros((gr, gc), np.float32)
            for win in lay.windows:
                full[win.rect] = win.dp * win.spr
            for part, dp in zip(lay.thin, thin_dp, strict=True):
                full.reshape(-1)[part.index] += dp * part.spr
            return scatter_small(vm, full)
        sh, sw = gr // fy, gc // fx
        small = np.zeros((sh, sw), np.float32)
        for win in lay.windows:
            h, w = win.dp.shape
            src = win.t  # free again: reuse as scratch
            np.multiply(win.dp, win.spr, out=src)
            rs, cs = win.rect
            small[rs.start // fy : rs.stop // fy, cs.start // fx : cs.stop // fx] += cv2.resize(
                src, (w // fx, h // fy), interpolation=cv2.INTER_AREA
            )
        for part, dp in zip(lay.thin, thin_dp, strict=True):
            if part.block is not None and part.block.size:
                sums = np.bincount(part.block, weights=dp * part.spr, minlength=sh * sw)
                small += (sums / (fy * fx)).astype(np.float32).reshape(sh, sw)
        return scatter_spread(vm, small)

    def field_box(self, vm: ViewMaps) -> tuple[slice, slice]:
        if vm.field_box is None:
            rows = np.nonzero(vm.field_grid.any(axis=1))[0]
            cols = np.nonzero(vm.field_grid.any(axis=0))[0]
            if rows.size == 0:
                vm.field_box = (slice(0, 0), slice(0, 0))
            else:
                vm.field_box = (
                    slice(int(rows[0]), int(rows[-1]) + 1),
                    slice(int(cols[0]), int(cols[-1]) + 1),
                )
        return vm.field_box

    def counts_gain(self) -> F32:
        gain = self.buffers.get("counts_gain")
        if gain is None:
            gain = self.buffers["counts_gain"] = self.detector.counts_gain()
        return gain
