"""An exam image as PNG for the page, rendered on the server from the DICOM file."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pydicom


def render_png(
    path: Path, center: float | None = None, width: float | None = None, size: int | None = None
) -> bytes:
    """The image's first frame, windowed (``center``/``width`` in stored values; default:
    the file's own window, else its full range), as 8-bit PNG bytes; ``size`` shrinks it to
    fit that many pixels on its longer side (the contact sheet's thumbnails)."""
    ds = pydicom.dcmread(path)
    pixels = np.asarray(ds.pixel_array, dtype=np.float64)
    if pixels.ndim == 3:
        pixels = pixels[0]
    if center is None or width is None:
        c, w = _window(ds)
        center = c if center is None else center
        width = w if width is None else width
        if center is None or width is None:
            lo, hi = float(pixels.min()), float(pixels.max())
            center, width = (lo + hi) / 2, max(hi - lo, 1.0)
    lo = center - width / 2
    out = np.clip((pixels - lo) / max(width, 1e-6) * 255.0, 0, 255).astype(np.uint8)
    if str(getattr(ds, "PhotometricInterpretation", "")) == "MONOCHROME1":
        out = 255 - out
    if size is not None and max(out.shape) > size:
        scale = size / max(out.shape)
        shape = (max(1, round(out.shape[1] * scale)), max(1, round(out.shape[0] * scale)))
        out = np.asarray(cv2.resize(out, shape, interpolation=cv2.INTER_AREA), dtype=np.uint8)
    ok, data = cv2.imencode(".png", out)
    if not ok:  # pragma: no cover - cv2 encodes any 8-bit image
        raise ValueError(f"{path.name}: cannot encode as PNG")
    return bytes(data.tobytes())


def _window(ds: pydicom.Dataset) -> tuple[float | None, float | None]:
    def first(value: object) -> float | None:
        if value is None:
            return None
        if isinstance(value, pydicom.multival.MultiValue):
            value = value[0]
        return float(value)  # type: ignore[arg-type]

    return first(ds.get("WindowCenter")), first(ds.get("WindowWidth"))
