"""A one-page PNG overview of an exam: every capture as a labelled, letterboxed tile.

Layout (all sizes scale with ``tile_px``): an optional header band across the top, then a grid of
``min(columns, n)`` cells per row. Each cell is a title band, the square image tile and a
subtitle band (up to two lines, wrapped at `` | ``). See :func:`sheet_size`.
"""

from __future__ import annotations

import math
import os
import tempfile
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from ..records import PATIENT_POSITIONS, CaptureRecord
from .display import collimated_mask, to_display
from .timing import format_after_injection

__all__ = ["ContactSheetEntry", "entry_for", "sheet_size", "write_contact_sheet"]

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_BAND = (38, 38, 38)  # BGR, label bands
_HEADER = (64, 40, 24)
_SEPARATOR = (90, 90, 90)
_TITLE_COLOUR = (255, 255, 255)
_SUBTITLE_COLOUR = (200, 215, 225)
_HEADER_COLOUR = (255, 255, 255)


@dataclass(frozen=True, slots=True)
class ContactSheetEntry:
    pixels_display: npt.NDArray[np.uint8]
    title: str
    subtitle: str


# -- entries ----------------------------------------------------------------------------------


def _timing(after_injection_s: float | None) -> str:
    if after_injection_s is None:
        return "scout (pre-contrast)"
    return format_after_injection(after_injection_s)


def entry_for(record: CaptureRecord) -> ContactSheetEntry:
    """Tile for one capture: middle frame of a fluoroscopy run, the frame of a radiograph."""
    if not record.frames:
        raise ValueError(f"{record.step_id}: a capture without frames has nothing to show")
    frame = record.frames[len(record.frames) // 2]
    shape = frame.pixels.shape[:2]
    spacing = frame.pixel_spacing_mm
    field = record.collimation
    pixels = to_display(
        frame.pixels,
        exposed_mask=collimated_mask(shape, spacing, field.width_mm, field.height_mm),
    )
    # Black out the collimator shadow, as the DICOM Display Shutter makes a viewer do.
    shutter = collimated_mask(shape, spacing, field.width_mm, field.height_mm, inset=0.0)
    pixels[~shutter] = 0
    position = PATIENT_POSITIONS.get(record.patient_position, ("", record.patient_position))[1]
    t = record.technique
    if record.kind == "fluoro":
        rate = f" {record.pulse_rate_hz:g} p/s" if record.pulse_rate_hz else ""
        technique = f"{t.kv:.0f} kV {t.ma:.1f} mA{rate} x{len(record.frames)}"
    else:
        technique = f"{t.kv:.0f} kV {t.mas:.1f} mAs"
    parts = [_timing(record.after_injection_s), position, technique]
    angle = record.pose.secondary_angle_deg
    if angle < 0:
        parts.append(f"{abs(angle):.0f}° caudad")
    elif angle > 0:
        parts.append(f"{angle:.0f}° cranial")
    title = f"{record.instance_number}. {record.label or record.step_id}"
    return ContactSheetEntry(pixels, title, " | ".join(parts))


# -- layout -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Layout:
    cols: int
    rows: int
    tile: int
    header_h: int
    title_h: int
    subtitle_h: int

    @property
    def cell_h(self) -> int:
        return self.title_h + self.tile + self.subtitle_h

    @property
    def size(self) -> tuple[int, int]:
        return self.cols * self.tile, self.header_h + self.rows * self.cell_h


def _layout(n: int, columns: int, tile_px: int, header: str) -> _Layout:
    if n < 1:
        raise ValueError("a contact sheet needs at least one entry")
    if columns < 1 or tile_px < 64:
        raise ValueError(f"columns must be >= 1 and tile_px >= 64, got {columns}, {tile_px}")
    cols = min(columns, n)
    return _Layout(
        cols=cols,
        rows=math.ceil(n / cols),
        tile=tile_px,
        header_h=round(tile_px * 0.11) if header else 0,
        title_h=round(tile_px * 0.085),
        subtitle_h=round(tile_px * 0.14),
    )


def sheet_size(
    n: int, *, columns: int = 4, tile_px: int = 360, header: str = ""
) -> tuple[int, int]:
    """(width, height) in pixels of the sheet :func:`write_contact_sheet` draws."""
    return _layout(n, columns, tile_px, header).size


# -- text -------------------------------------------------------------------------------------


def _ascii(text: str) -> str:
    """Hershey fonts are ASCII only: strip accents, keep ``°`` (drawn as a ring), drop the rest."""
    out = []
    for c in unicodedata.normalize("NFKD", text):
        if c == "°" or (c.isascii() and c.isprintable()):
            out.append(c)
        elif not unicodedata.combining(c):
            out.append("?")
    return "".join(out)


def _text_width(text: str, scale: float, thickness: int) -> int:
    width = 0
    for i, chunk in enumerate(text.split("°")):
        if i:
            width += round(cv2.getTextSize("o", _FONT, scale, thickness)[0][0] * 0.8)
        if chunk:
            width += cv2.getTextSize(chunk, _FONT, scale, thickness)[0][0]
    return width


def _put_text(
    img: npt.NDArray[np.uint8],
    text: str,
    org: tuple[int, int],
    scale: float,
    colour: tuple[int, int, int],
    thickness: int = 1,
) -> None:
    """cv2.putText with ``°`` drawn as a small raised ring."""
    x, y = org
    cap_h = cv2.getTextSize("H", _FONT, scale, thickness)[0][1]
    for i, chunk in enumerate(text.split("°")):
        if i:
            r = max(1, round(cap_h * 0.18))
            ring_w = round(cv2.getTextSize("o", _FONT, scale, thickness)[0][0] * 0.8)
            cv2.circle(img, (x + ring_w // 2, y - cap_h + r), r, colour, 1, cv2.LINE_AA)
            x += ring_w
        if chunk:
            cv2.putText(img, chunk, (x, y), _FONT, scale, colour, thickness, cv2.LINE_AA)
            x += cv2.getTextSize(chunk, _FONT, scale, thickness)[0][0]


def _fit(text: str, max_w: int, scale: float, thickness: int) -> tuple[str, float]:
    """Shrink the font (down to 60 %) and then truncate so ``text`` fits ``max_w``."""
    min_scale = scale * 0.6
    while scale > min_scale and _text_width(text, scale, thickness) > max_w:
        scale *= 0.93
    while len(text) > 1 and _text_width(text, scale, thickness) > max_w:
        text = text[:-2] + "~"
    return text, scale


def _wrap(parts: list[str], max_w: int, scale: float, max_lines: int) -> list[str]:
    lines: list[str] = []
    for part in parts:
        candidate = f"{lines[-1]} | {part}" if lines else part
        if lines and _text_width(candidate, scale, 1) <= max_w:
            lines[-1] = candidate
        elif len(lines) < max_lines:
            lines.append(part)
        else:
            lines[-1] = f"{lines[-1]} | {part}"
    return lines


# -- drawing ----------------------------------------------------------------------------------


def _tile(pixels: npt.NDArray[np.uint8], size: int) -> npt.NDArray[np.uint8]:
    if pixels.ndim == 3 and pixels.shape[2] == 3:
        grey = cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY)
    elif pixels.ndim == 2:
        grey = pixels
    else:
        raise ValueError(f"expected a 2-D uint8 image, got shape {pixels.shape}")
    if grey.dtype != np.uint8 or grey.size == 0:
        raise ValueError(f"expected a non-empty uint8 image, got {grey.dtype} {grey.shape}")
    h, w = grey.shape
    scale = min(size / w, size / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(grey, (nw, nh), interpolation=interp)
    tile = np.zeros((size, size), dtype=np.uint8)
    y0, x0 = (size - nh) // 2, (size - nw) // 2
    tile[y0 : y0 + nh, x0 : x0 + nw] = resized
    out = np.asarray(cv2.cvtColor(tile, cv2.COLOR_GRAY2BGR), dtype=np.uint8)
    return out


def _render(
    entries: Sequence[ContactSheetEntry], lay: _Layout, header: str
) -> npt.NDArray[np.uint8]:
    width, height = lay.size
    sheet = np.zeros((height, width, 3), dtype=np.uint8)
    k = lay.tile / 360.0
    pad = max(3, round(6 * k))
    if lay.header_h:
        sheet[: lay.header_h] = _HEADER
        text, scale = _fit(_ascii(header), width - 2 * pad, 0.75 * k, 1)
        th = cv2.getTextSize("H", _FONT, scale, 1)[0][1]
        _put_text(sheet, text, (pad, (lay.header_h + th) // 2), scale, _HEADER_COLOUR)
    for i, entry in enumerate(entries):
        r, c = divmod(i, lay.cols)
        x0 = c * lay.tile
        y0 = lay.header_h + r * lay.cell_h
        cell = sheet[y0 : y0 + lay.cell_h, x0 : x0 + lay.tile]
        cell[: lay.title_h] = _BAND
        cell[lay.title_h + lay.tile :] = _BAND
        cell[lay.title_h : lay.title_h + lay.tile] = _tile(entry.pixels_display, lay.tile)

        title, scale = _fit(_ascii(entry.title), lay.tile - 2 * pad, 0.55 * k, 1)
        th = cv2.getTextSize("H", _FONT, scale, 1)[0][1]
        _put_text(cell, title, (pad, (lay.title_h + th) // 2), scale, _TITLE_COLOUR)

        sub_scale = 0.45 * k
        parts = [p.strip() for p in _ascii(entry.subtitle).split("|") if p.strip()]
        lines = _wrap(parts, lay.tile - 2 * pad, sub_scale, 2) if parts else []
        line_h = lay.subtitle_h // 2
        for j, line in enumerate(lines):
            text, scale = _fit(line, lay.tile - 2 * pad, sub_scale, 1)
            th = cv2.getTextSize("H", _FONT, scale, 1)[0][1]
            y = lay.title_h + lay.tile + j * line_h + (line_h + th) // 2
            _put_text(cell, text, (pad, y), scale, _SUBTITLE_COLOUR)
        # Cell separators (right and bottom edges).
        cell[:, -1] = _SEPARATOR
        cell[-1, :] = _SEPARATOR
    return sheet


def write_contact_sheet(
    entries: Sequence[ContactSheetEntry],
    path: Path,
    *,
    columns: int = 4,
    tile_px: int = 360,
    header: str = "",
) -> Path:
    """Draw the sheet and write it as PNG, atomically (temporary file, fsync, rename)."""
    path = Path(path)
    lay = _layout(len(entries), columns, tile_px, header)
    sheet = _render(entries, lay, header)
    ok, encoded = cv2.imencode(".png", sheet)
    if not ok:
        raise RuntimeError("PNG encoding of the contact sheet failed")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(encoded.tobytes())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path
