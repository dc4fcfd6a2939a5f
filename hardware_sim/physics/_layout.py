"""Fast synthesis: the windows around the dense compartments and the thin ones' pixels, with
the background arrays cut to them (see :mod:`.imaging`)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ._geometry import Parts, ViewMaps
from ._lru import trim
from ._scatter import scatter_blocks
from ._synthesis import GAUSS_NODES, Background, Dense, Layout, Synthesis, Thin, Window

F32 = npt.NDArray[np.float32]

LAYOUT_CACHE_SIZE = 2  # layouts kept per background


def build_layout(
    vm: ViewMaps,
    syn: Synthesis,
    bg: Background,
    dense: Dense,
    thin: list[str],
    parts: Parts,
    kernel: F32 | None,
) -> Layout:
    """Windows around the dense compartments (merged until disjoint) and the thin ones'
    pixels outside them, with the background arrays cut to both (cached on ``bg``: it
    changes only when a volume-dependent map steps)."""
    boxes = tuple((b[0].start, b[0].stop, b[1].start, b[1].stop) for b, _ in dense)
    key = (boxes, tuple(thin))
    lay = bg.layouts.get(key)
    if lay is not None:
        return lay
    gr, gc = vm.grid_rows, vm.grid_cols
    fy, fx = scatter_blocks(gr, gc)
    ay, ax = max(fy, 1), max(fx, 1)
    pad = 3  # room for the light spread of the change
    rects = []
    for r0, r1, c0, c1 in boxes:
        r0, c0 = max(r0 - pad, 0), max(c0 - pad, 0)
        r1, c1 = min(r1 + pad, gr), min(c1 + pad, gc)
        # aligned to the scatter blocks, so that the change reduces in place
        rects.append(
            [r0 - r0 % ay, min(-(-r1 // ay) * ay, gr), c0 - c0 % ax, min(-(-c1 // ax) * ax, gc)]
        )
    merged = True
    while merged:
        merged = False
        for i in range(len(rects)):
            for j in range(i + 1, len(rects)):
                a, b = rects[i], rects[j]
                if a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]:
                    rects[i] = [
                        min(a[0], b[0]),
                        max(a[1], b[1]),
                        min(a[2], b[2]),
                        max(a[3], b[3]),
                    ]
                    del rects[j]
                    merged = True
                    break
            if merged:
                break
    rr, rc = vm.roi
    windows: list[Window] = []
    for r0, r1, c0, c1 in rects:
        rect = (slice(r0, r1), slice(c0, c1))
        kerma_roi = None
        k0, k1 = max(r0, rr.start), min(r1, rr.stop)
        j0, j1 = max(c0, rc.start), min(c1, rc.stop)
        if k0 < k1 and j0 < j1:
            kerma_roi = (
                (slice(k0 - r0, k1 - r0), slice(j0 - c0, j1 - c0)),
                (slice(k0 - rr.start, k1 - rr.start), slice(j0 - rc.start, j1 - rc.start)),
            )
        windows.append(
            Window(
                rect=rect,
                negx=np.ascontiguousarray(syn.negx[:, r0:r1, c0:c1]),
                amp=np.ascontiguousarray(bg.amp[:, r0:r1, c0:c1]),
                var=np.ascontiguousarray(bg.var[:, r0:r1, c0:c1]),
                neg_primary=np.negative(bg.primary[rect]),
                neg_var_primary=np.negative(bg.var_primary[rect]),
                spr=np.ascontiguousarray(vm.spr[rect]),
                kerma_roi=kerma_roi,
            )
        )
    dense_window = [
        next(
            k
            for k, (r0, r1, c0, c1) in enumerate(rects)
            if r0 <= b[0] and b[1] <= r1 and c0 <= b[2] and b[3] <= c1
        )
        for b in boxes
    ]
    kpad = 0 if kernel is None else kernel.size // 2
    thin_parts = []
    for comp in thin:
        u = parts.ureters[comp]
        free = np.ones(u.rows.size, dtype=bool)
        routes = []
        for k, (r0, r1, c0, c1) in enumerate(rects):
            inside = free & (u.rows >= r0) & (u.rows < r1) & (u.cols >= c0) & (u.cols < c1)
            if inside.any():
                pos = np.nonzero(inside)[0]
                local = (u.rows[pos] - r0) * (c1 - c0) + (u.cols[pos] - c0)
                routes.append((k, pos, local.astype(np.intp)))
                free &= ~inside
        keep = np.nonzero(free)[0]
        rows, cols = u.rows[keep], u.cols[keep]
        index = (rows * gc + cols).astype(np.intp)
        if keep.size:
            b0, b1 = max(int(rows.min()) - kpad, 0), min(int(rows.max()) + 1 + kpad, gr)
            k0, k1 = max(int(cols.min()) - kpad, 0), min(int(cols.max()) + 1 + kpad, gc)
        else:
            b0 = b1 = k0 = k1 = 0
        in_roi = (rows >= rr.start) & (rows < rr.stop) & (cols >= rc.start) & (cols < rc.stop)
        kerma = None
        if in_roi.any():
            pos = np.nonzero(in_roi)[0]
            roi_idx = (rows[pos] - rr.start) * (rc.stop - rc.start) + (cols[pos] - rc.start)
            kerma = (pos, roi_idx, bg.kerma.reshape(GAUSS_NODES, -1)[:, roi_idx])
        thin_parts.append(
            Thin(
                comp=comp,
                keep=keep,
                index=index,
                box=(slice(b0, b1), slice(k0, k1)),
                local=((rows - b0) * (k1 - k0) + (cols - k0)).astype(np.intp),
                negx=syn.negx.reshape(GAUSS_NODES, -1)[:, index],
                amp=bg.amp.reshape(GAUSS_NODES, -1)[:, index],
                var=bg.var.reshape(GAUSS_NODES, -1)[:, index],
                neg_primary=np.negative(bg.primary.reshape(-1)[index]),
                neg_var_primary=np.negative(bg.var_primary.reshape(-1)[index]),
                spr=vm.spr.reshape(-1)[index],
                block=((rows // fy) * (gc // fx) + cols // fx).astype(np.intp) if fy else None,
                kerma=kerma,
                routes=routes,
            )
        )
    lay = Layout(windows, dense_window, thin_parts)
    bg.layouts[key] = lay
    trim(bg.layouts, LAYOUT_CACHE_SIZE)
    return lay
