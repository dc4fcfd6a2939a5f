"""Display mapping and the contact sheet PNG."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from drivers import (
    CollimationField,
    Dose,
    FocalSpot,
    Frame,
    PositionerPose,
    TablePosition,
    Technique,
)
from scheduler.outputs import (
    ContactSheetEntry,
    DisplayWindow,
    compute_window,
    entry_for,
    to_display,
    to_presentation,
    write_contact_sheet,
)
from scheduler.records import CaptureRecord

T0 = dt.datetime(2024, 3, 5, 9, 30, tzinfo=dt.UTC)


def anatomy(shape: tuple[int, int] = (256, 256), seed: int = 0) -> np.ndarray:
    """Float signal: open-field gradient, a soft-tissue band and a dense (iodine/bone) block."""
    rng = np.random.default_rng(seed)
    h, w = shape
    xx = np.mgrid[0:h, 0:w][1]
    img = 6000.0 + 3000.0 * xx / w
    img[:, w // 3 : 2 * w // 3] *= 0.5
    img[h // 2 - h // 10 : h // 2 + h // 10, w // 2 - w // 10 : w // 2 + w // 10] = 700.0
    return img + rng.normal(0, 15, shape)


def with_border(img: np.ndarray, border: int, dark: float = 100.0) -> np.ndarray:
    out = img.copy()
    out[:border], out[-border:], out[:, :border], out[:, -border:] = dark, dark, dark, dark
    return out


def u16(img: np.ndarray) -> np.ndarray:
    return np.clip(img, 0, 65535).astype(np.uint16)


# -- display ------------------------------------------------------------------------------------


def test_dense_block_is_brighter_than_background() -> None:
    raw = u16(with_border(anatomy(), 30))
    out = to_display(raw)
    assert out.dtype == np.uint8 and out.shape == raw.shape
    dense = out[115:140, 115:140].mean()
    open_field = out[60:80, 40:70].mean()
    soft = out[60:80, 110:140].mean()
    assert dense > soft + 30 > open_field + 60  # more attenuation → whiter
    assert dense > 180 and open_field < 90


def test_collimated_border_does_not_drive_the_window() -> None:
    """The same anatomy with and without a dark collimator shadow maps (nearly) alike."""
    img = anatomy((300, 300))
    plain = to_display(u16(img)).astype(int)
    bordered = to_display(u16(with_border(img, 40))).astype(int)
    inner = (slice(60, 240), slice(60, 240))  # away from the border's unsharp-mask halo
    assert np.abs(plain[inner] - bordered[inner]).mean() < 6
    # Without protection the dark border would become the white end and squeeze the anatomy.
    assert plain[inner].max() - plain[inner].min() > 150


def test_explicit_mask_is_honoured() -> None:
    img = anatomy()
    raw = u16(img)
    mask = np.zeros(raw.shape, bool)
    mask[:, :60] = True  # window only on the brightest (least attenuated) strip
    narrow = to_display(raw, exposed_mask=mask)
    full = to_display(raw)
    # The strip spans the whole window when it alone defines it.
    assert int(narrow[:, 5:55].max()) - int(narrow[:, 5:55].min()) > int(full[:, 5:55].max()) - int(
        full[:, 5:55].min()
    )


def test_display_is_deterministic_and_presentation_consistent() -> None:
    raw = u16(with_border(anatomy(seed=3), 20))
    a, b = to_display(raw), to_display(raw)
    assert np.array_equal(a, b)
    p12 = to_presentation(raw)
    assert p12.dtype == np.uint16 and int(p12.max()) <= 4095
    assert int(to_presentation(raw, bits=10).max()) <= 1023
    # Same mapping, different depth: 12-bit scaled down matches 8-bit within rounding.
    assert np.abs(p12.astype(float) * 255 / 4095 - a).max() <= 1.0


def reference_presentation(raw: np.ndarray, window: DisplayWindow, bits: int) -> np.ndarray:
    """The documented mapping in float64, step by step: the windowed log (1 = white), an
    unsharp mask of amount 0.5 whose blur is taken on a 4× smaller image, rounded, clipped."""
    top = (1 << bits) - 1
    log = np.log(np.maximum(raw.astype(np.float64) - window.offset, 1.0))
    v = (window.log_high - log) / (window.log_high - window.log_low)
    rows, cols = v.shape
    small = cv2.resize(v, (cols // 4, rows // 4), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), max(1.0, min(rows, cols) / 96.0) / 4)
    blur = cv2.resize(small, (cols, rows), interpolation=cv2.INTER_LINEAR)
    return np.clip(np.rint((v + 0.5 * (v - blur)) * top), 0, top)


def test_presentation_is_the_documented_mapping_into_the_given_frame() -> None:
    """Two images of different shapes in turn (the mapping keeps scratch buffers between
    calls), each written into a frame of a pixel stack as the DICOM writer does."""
    for shape, seed in (((256, 320), 4), ((96, 128), 5), ((256, 320), 6)):
        raw = u16(with_border(anatomy(shape, seed=seed), 12))
        window = compute_window(raw)
        stack = np.full((2, *shape), 7, dtype=np.uint16)
        got = to_presentation(raw, 12, window=window, out=stack[1])
        assert got is stack[1] or np.shares_memory(got, stack[1])
        expected = reference_presentation(raw, window, 12)
        diff = np.abs(stack[1].astype(np.float64) - expected)
        assert diff.max() <= 1.0  # float32 rounding at a half step
        assert np.count_nonzero(diff) <= raw.size // 100
        assert (stack[0] == 7).all()  # the other frame untouched
    with pytest.raises(ValueError, match="C-contiguous uint16"):
        to_presentation(raw, 12, out=np.zeros(shape, dtype=np.float32))  # type: ignore[arg-type]


def test_to_display_is_fast_for_1024_squared() -> None:
    raw = u16(with_border(anatomy((1024, 1024)), 100))
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        to_display(raw)
        best = min(_timed(lambda: to_display(raw)) for _ in range(5))
    finally:
        cv2.setNumThreads(threads)
    assert best < 0.020, f"to_display took {best * 1000:.1f} ms"


def _timed(fn: object) -> float:
    t0 = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - t0


# -- entries ------------------------------------------------------------------------------------


def make_record(
    *,
    after: float | None,
    kind: str = "radiograph",
    frames_px: list[np.ndarray] | None = None,
    angle: float = 0.0,
    position: str = "supine",
) -> CaptureRecord:
    technique = (
        Technique(75.0, 400.0, 50.0)
        if kind == "radiograph"
        else Technique(70.0, 12.5, 6.0, FocalSpot.SMALL)
    )
    pose = PositionerPose(0.0, angle, 1150.0)
    field = CollimationField(200.0, 200.0)
    pixels = frames_px or [u16(with_border(anatomy(), 28))]
    frames = tuple(
        Frame(px, 1.0, 10.0 + i / 7.5, technique, pose, field, Dose(0.1, 0.2, 0.05))
        for i, px in enumerate(pixels)
    )
    return CaptureRecord(
        step_id="nephro",
        label="Nephrogram",
        kind=kind,
        instance_number=3,
        frames=frames,
        planned_s=None,
        commanded_s=10.0,
        device_s=10.0,
        acquisition_time=T0,
        after_injection_s=after,
        patient_position=position,
        technique=technique,
        pose=pose,
        collimation=field,
        table=TablePosition(),
        contrast=None,
        pulse_rate_hz=7.5 if kind == "fluoro" else None,
    )


def test_entry_subtitles() -> None:
    scout = entry_for(make_record(after=None))
    assert "Nephrogram" in scout.title
    assert "scout (pre-contrast)" in scout.subtitle
    assert "supine" in scout.subtitle
    assert "75 kV 20.0 mAs" in scout.subtitle
    assert "caudad" not in scout.subtitle

    early = entry_for(make_record(after=12.2, angle=-15.0, position="lpo"))
    assert "+12 s" in early.subtitle
    assert "15° caudad" in early.subtitle
    assert "left posterior oblique" in early.subtitle

    assert "+5 min" in entry_for(make_record(after=300.3)).subtitle
    assert "+5 min 12 s" in entry_for(make_record(after=312.0)).subtitle
    assert "+5 min 00 s" not in entry_for(make_record(after=300.0)).subtitle


def test_fluoro_entry_shows_the_middle_frame() -> None:
    base = anatomy()
    marked = base.copy()
    marked[20:60, 20:60] = 300.0  # a dense marker only in the middle frame
    frames = [u16(base), u16(base), u16(marked), u16(base), u16(base)]
    entry = entry_for(make_record(after=40.0, kind="fluoro", frames_px=frames))
    assert (
        entry.pixels_display[35:45, 35:45].mean() > entry.pixels_display[35:45, 200:210].mean() + 60
    )


# -- sheet --------------------------------------------------------------------------------------


def entries(n: int) -> list[ContactSheetEntry]:
    out = []
    for i in range(n):
        img = to_display(u16(with_border(anatomy((300, 200), seed=i), 20)))
        out.append(
            ContactSheetEntry(
                img, f"{i + 1}. Step {i + 1}", f"+{i * 5} min | supine | 75 kV 20.0 mAs"
            )
        )
    return out


def read(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert img is not None, f"{path} is not a readable image"
    return img


def test_sheet_size_follows_entries_and_columns(tmp_path: Path) -> None:
    tile = 200
    four = read(write_contact_sheet(entries(4), tmp_path / "4.png", columns=2, tile_px=tile))
    five = read(write_contact_sheet(entries(5), tmp_path / "5.png", columns=2, tile_px=tile))
    six = read(write_contact_sheet(entries(6), tmp_path / "6.png", columns=2, tile_px=tile))
    three = read(write_contact_sheet(entries(3), tmp_path / "3.png", columns=4, tile_px=tile))
    headed = read(
        write_contact_sheet(
            entries(4), tmp_path / "h.png", columns=2, tile_px=tile, header="IVU | Doe^Jane"
        )
    )

    assert four.shape[1] == five.shape[1] == 2 * tile  # columns × tile width
    assert three.shape[1] == 3 * tile  # fewer entries than columns: no empty columns
    cell_h = five.shape[0] - four.shape[0]  # one more row
    assert cell_h > tile  # image plus label bands
    assert six.shape[0] == five.shape[0]  # same number of rows
    assert four.shape[0] == 2 * cell_h and three.shape[0] == cell_h
    assert headed.shape[0] > four.shape[0] and headed.shape[1] == four.shape[1]


def test_tiles_are_non_blank_and_labelled(tmp_path: Path) -> None:
    tile = 240
    sheet = read(write_contact_sheet(entries(3), tmp_path / "s.png", columns=2, tile_px=tile))
    cell_h = sheet.shape[0] // 2
    cells = [
        sheet[r * cell_h : (r + 1) * cell_h, c * tile : (c + 1) * tile]
        for r in range(2)
        for c in range(2)
    ]
    for cell in cells[:3]:
        grey = cell.mean(axis=2)
        assert grey.std() > 20  # image content
        assert grey.max() >= 200  # dense block and/or label text
    assert cells[3].max() == 0  # the unused fourth cell stays empty
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_letterbox_preserves_aspect(tmp_path: Path) -> None:
    tile = 200
    wide = np.full((100, 300), 255, np.uint8)  # 3:1 white image
    sheet = read(
        write_contact_sheet([ContactSheetEntry(wide, "", "")], tmp_path / "w.png", tile_px=tile)
    )
    column = sheet[:, tile // 2, 0]
    white_rows = int((column == 255).sum())
    assert abs(white_rows - tile / 3) <= 2
    row = sheet[int(np.flatnonzero(column == 255).mean()), :, 0]
    assert (row == 255).sum() >= tile - 2


def test_sheet_replaces_existing_file_and_rejects_empty(tmp_path: Path) -> None:
    path = tmp_path / "sheet.png"
    path.write_bytes(b"old")
    assert write_contact_sheet(entries(1), path) == path
    assert read(path).shape[1] == 360
    with pytest.raises(ValueError):
        write_contact_sheet([], tmp_path / "empty.png")
    assert not (tmp_path / "empty.png").exists()
