"""Rasterising the phantom into a label volume."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from ._shapes import Primitive, Vec3, _v


class Voxels:
    primitives: tuple[Primitive, ...]

    def voxelize(
        self, spacing_mm: float = 2.0
    ) -> tuple[npt.NDArray[np.uint8], list[str], Vec3, float]:
        """Rasterise the primitives into a label volume: ``(labels, materials, origin_mm,
        spacing_mm)``.

        ``labels[i, j, k]`` is the index into ``materials`` of the material at the voxel centre
        ``origin_mm + (i, j, k)·spacing_mm`` (patient frame: x left, y anterior, z cranial);
        label 0 is ``"air"`` (outside the body, and bowel gas).  The grid spans the bounding
        box of every primitive that has a material.  Each voxel is classified at its centre.

        Overlaps follow the projector's displacement rule read as painting: primitives are
        drawn in order and each sets the voxels inside it to its ``material`` (a kidney inside
        perirenal fat replaces the fat, the renal sinus then replaces kidney, a trabecular core
        replaces its cortical shell) — the same as adding its chord to ``material`` and
        removing it from ``displaces`` wherever ``displaces`` is what lies underneath, which is
        how the phantom is built.  Iodine-only primitives (``material=None``: urine spaces,
        blood in the vessels) carry no material and leave the labels unchanged, as do the
        volume-dependent bladder and collecting systems (:meth:`bladder_primitive`,
        :meth:`collecting_system`), which are not part of :attr:`primitives`.  Structures
        thinner than the spacing (1.6-mm cortical shells, 2-mm spacing) are under-sampled.
        """
        if spacing_mm <= 0:
            raise ValueError("spacing_mm must be > 0")
        solid = [p for p in self.primitives if p.material is not None]
        materials = ["air"]
        for p in solid:
            if p.material not in materials:
                materials.append(str(p.material))
        corners = np.vstack([p.corners() for p in solid])
        lo, hi = corners.min(axis=0), corners.max(axis=0)
        shape = tuple(math.ceil(float(hi[k] - lo[k]) / spacing_mm) for k in range(3))
        origin = lo + spacing_mm / 2.0
        labels = np.zeros(shape, np.uint8)
        axes = [origin[k] + spacing_mm * np.arange(shape[k]) for k in range(3)]
        for p in solid:
            c = p.corners()
            i0 = [max(math.floor((c[:, k].min() - origin[k]) / spacing_mm), 0) for k in range(3)]
            i1 = [
                min(math.ceil((c[:, k].max() - origin[k]) / spacing_mm) + 1, shape[k])
                for k in range(3)
            ]
            if any(a >= b for a, b in zip(i0, i1, strict=True)):
                continue
            d = [(axes[k][i0[k] : i1[k]] - p.centre[k]).astype(np.float32) for k in range(3)]
            m = p.local_matrix().astype(np.float32)
            loc = [
                m[r, 0] * d[0][:, None, None]
                + m[r, 1] * d[1][None, :, None]
                + m[r, 2] * d[2][None, None, :]
                for r in range(3)
            ]
            if p.kind == "ellipsoid":
                inside = loc[0] * loc[0] + loc[1] * loc[1] + loc[2] * loc[2] <= 1.0
            elif p.kind == "cylinder":
                inside = (loc[0] * loc[0] + loc[1] * loc[1] <= 1.0) & (np.abs(loc[2]) <= 1.0)
            else:
                raise ValueError(f"unknown primitive kind {p.kind!r}")
            block = labels[i0[0] : i1[0], i0[1] : i1[1], i0[2] : i1[2]]
            block[inside] = materials.index(str(p.material))
        return labels, materials, _v(origin), float(spacing_mm)
