"""Findings: stones, cysts (see :class:`~._build.Finding`)."""

from __future__ import annotations

from ._base import PhantomBase
from ._shapes import Primitive, ellipsoid


class Findings(PhantomBase):
    def _findings(self) -> list[Primitive]:
        prims: list[Primitive] = []
        for f in self.build.findings:
            r = f.diameter_mm / 2.0
            if f.kind == "stone":
                prims.append(ellipsoid(f.centre_mm, (r, r * 0.8, r * 1.1), "stone",
                                       "soft_tissue", name="stone"))  # fmt: skip
            elif f.kind == "cyst":
                prims.append(ellipsoid(f.centre_mm, (r, r, r), "urine", "kidney", None,
                                       f"kidney_{f.side}", -1.0, name="cyst"))  # fmt: skip
            else:
                raise ValueError(f"unknown finding kind {f.kind!r}")
        return prims
