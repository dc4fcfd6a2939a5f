"""The simulated detector's image memory on disk: plain data, never pickle.

Each acquisition result (a radiograph :class:`~drivers.Frame`, a :class:`~drivers.FluoroRun`
or a :class:`~drivers.TomoSeries`) is two files in the exam's ``sim-state/`` folder:

* ``acquisition-NNN.npz`` — the pixel arrays (``frame0``, ``frame1``, …), numpy's zip of
  ``.npy`` files, read back with ``allow_pickle=False`` (an object array is refused);
* ``acquisition-NNN.json`` — everything else (kind, times, technique, pose, collimation, dose,
  each array's shape and dtype) and the SHA-256 of the ``.npz``. Written last: an acquisition
  exists once its JSON does.

A file in the exam folder can therefore never run code. Reading is strict: a file that is not
exactly what :func:`save_acquisition` writes (a foreign or damaged file, a pickle named like an
acquisition, a digest or shape that does not match) is refused with a reason, never loaded
and never fatal.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from drivers import (
    CollimationField,
    Dose,
    FluoroRun,
    FocalSpot,
    Frame,
    PositionerPose,
    Technique,
    TomoSeries,
)

FORMAT = "fluoroctl-sim-acquisition"
VERSION = 1
KINDS = ("radiograph", "fluoro", "tomo")
#: what the simulator names its files; anything else matching ``acquisition-*`` is foreign
_NAME = re.compile(r"^acquisition-(\d{3,9})\.json$")
#: refuse metadata files far larger than any real one (a fluoro run of 600 frames is ~0.5 MB)
_MAX_JSON_BYTES = 4 * 1024 * 1024

Result = Frame | FluoroRun | TomoSeries


class AcquisitionFileError(ValueError):
    """A file in the simulator's state folder is not an acquisition it wrote."""


@dataclass(frozen=True, slots=True)
class StoredAcquisition:
    index: int
    kind: str
    result: Result


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary name, fsynced, then renamed."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def next_index(directory: Path) -> int:
    """One past the highest ``acquisition-NNN.*`` number present: nothing is overwritten."""
    numbers = [
        int(m.group(1))
        for p in directory.glob("acquisition-*")
        if (m := re.match(r"^acquisition-(\d+)\.", p.name))
    ]
    return max(numbers, default=0) + 1


# -- writing -----------------------------------------------------------------------------------


def save_acquisition(directory: Path, index: int, kind: str, result: Result) -> Path:
    """Store ``result`` as ``acquisition-{index:03d}.npz`` + ``.json``; returns the JSON path."""
    frames = _frames_of(kind, result)
    arrays = {f"frame{i}": np.ascontiguousarray(f.pixels) for i, f in enumerate(frames)}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    npz = buffer.getvalue()
    stem = f"acquisition-{index:03d}"
    meta: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "kind": kind,
        "pixels": f"{stem}.npz",
        "sha256": hashlib.sha256(npz).hexdigest(),
        "frames": [_frame_meta(f, f"frame{i}", arrays[f"frame{i}"]) for i, f in enumerate(frames)],
    }
    if isinstance(result, FluoroRun):
        meta["fluoro"] = {
            "pulse_rate_hz": result.pulse_rate_hz,
            "started_at_s": result.started_at_s,
            "ended_at_s": result.ended_at_s,
        }
    elif isinstance(result, TomoSeries):
        meta["tomo"] = {
            "heights_mm": list(result.heights_mm),
            "sweep_deg": result.sweep_deg,
            "projections": result.projections,
            "started_at_s": result.started_at_s,
            "ended_at_s": result.ended_at_s,
        }
    atomic_write(directory / f"{stem}.npz", npz)
    path = directory / f"{stem}.json"
    atomic_write(path, json.dumps(meta, allow_nan=False).encode())
    return path


def _frames_of(kind: str, result: Result) -> tuple[Frame, ...]:
    if kind == "fluoro" and isinstance(result, FluoroRun):
        return result.frames
    if kind == "tomo" and isinstance(result, TomoSeries):
        return result.layers
    if kind == "radiograph" and isinstance(result, Frame):
        return (result,)
    raise TypeError(f"cannot store a {type(result).__name__} as a {kind!r} acquisition")


def _frame_meta(frame: Frame, array: str, pixels: npt.NDArray[Any]) -> dict[str, Any]:
    t = frame.technique
    return {
        "array": array,
        "shape": list(pixels.shape),
        "dtype": pixels.dtype.str,
        "pixel_spacing_mm": frame.pixel_spacing_mm,
        "acquired_at_s": frame.acquired_at_s,
        "bits_stored": frame.bits_stored,
        "technique": {
            "kv": t.kv,
            "ma": t.ma,
            "exposure_ms": t.exposure_ms,
            "focal_spot": t.focal_spot.value,
            "filtration_mm_al": t.filtration_mm_al,
            "filtration_mm_cu": t.filtration_mm_cu,
        },
        "pose": [frame.pose.primary_angle_deg, frame.pose.secondary_angle_deg, frame.pose.sid_mm],
        "collimation": [frame.collimation.width_mm, frame.collimation.height_mm],
        "dose": [
            frame.dose.reference_air_kerma_mgy,
            frame.dose.entrance_air_kerma_mgy,
            frame.dose.dap_gy_cm2,
        ],
    }


# -- reading -----------------------------------------------------------------------------------


def acquisition_files(directory: Path) -> tuple[list[tuple[int, Path]], list[tuple[Path, str]]]:
    """The acquisition JSON files in index order, and every other ``acquisition-*`` file
    that can never be one (with why), e.g. a ``.pkl`` left by an older version or dropped in."""
    found: list[tuple[int, Path]] = []
    foreign: list[tuple[Path, str]] = []
    for path in sorted(directory.glob("acquisition-*")):
        m = _NAME.match(path.name)
        if m is not None:
            found.append((int(m.group(1)), path))
        elif path.name.endswith(".tmp"):
            continue  # a write cut short; the rename never happened
        elif re.match(r"^acquisition-\d{3,9}\.npz$", path.name):
            if not path.with_suffix(".json").exists():
                foreign.append((path, "pixels without their metadata (not loaded)"))
        else:
            foreign.append((path, "not an acquisition file the simulator writes (not loaded)"))
    return sorted(found), foreign


def load_acquisition(path: Path) -> StoredAcquisition:
    """Read one ``acquisition-NNN.json`` and its ``.npz``; :class:`AcquisitionFileError`
    says why a file is refused."""
    m = _NAME.match(path.name)
    if m is None:
        raise AcquisitionFileError("not named acquisition-NNN.json")
    try:
        if path.stat().st_size > _MAX_JSON_BYTES:
            raise AcquisitionFileError("metadata file too large")
        meta = json.loads(path.read_bytes())
        return _from_meta(int(m.group(1)), path.parent, meta)
    except AcquisitionFileError:
        raise
    except (OSError, ValueError, TypeError, KeyError, IndexError, RecursionError) as exc:
        raise AcquisitionFileError(f"{type(exc).__name__}: {exc}") from None


def _from_meta(index: int, directory: Path, meta: Any) -> StoredAcquisition:
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise AcquisitionFileError("not a simulator acquisition (format)")
    if meta.get("version") != VERSION:
        raise AcquisitionFileError(f"unknown version {meta.get('version')!r}")
    kind = meta["kind"]
    if kind not in KINDS:
        raise AcquisitionFileError(f"unknown kind {kind!r}")
    expected_npz = f"acquisition-{index:03d}.npz"
    if meta["pixels"] != expected_npz:
        raise AcquisitionFileError(f"pixels file {meta['pixels']!r} is not {expected_npz!r}")
    npz = (directory / expected_npz).read_bytes()
    if hashlib.sha256(npz).hexdigest() != meta["sha256"]:
        raise AcquisitionFileError(f"{expected_npz} does not match its recorded SHA-256")
    frames_meta = meta["frames"]
    if not isinstance(frames_meta, list):
        raise AcquisitionFileError("frames is not a list")
    with np.load(io.BytesIO(npz), allow_pickle=False) as arrays:
        frames = tuple(_frame(f, arrays) for f in frames_meta)
    result: Result
    if kind == "radiograph":
        if len(frames) != 1:
            raise AcquisitionFileError("a radiograph has exactly one frame")
        result = frames[0]
    elif kind == "fluoro":
        f = meta["fluoro"]
        result = FluoroRun(
            frames, _num(f, "pulse_rate_hz"), _num(f, "started_at_s"), _num(f, "ended_at_s")
        )
    else:
        t = meta["tomo"]
        heights = tuple(_finite(h) for h in t["heights_mm"])
        if len(heights) != len(frames):
            raise AcquisitionFileError("one layer per height expected")
        projections = t["projections"]
        if isinstance(projections, bool) or not isinstance(projections, int):
            raise AcquisitionFileError("projections is not an integer")
        result = TomoSeries(
            frames,
            heights,
            _num(t, "sweep_deg"),
            projections,
            _num(t, "started_at_s"),
            _num(t, "ended_at_s"),
        )
    return StoredAcquisition(index, kind, result)


def _frame(f: Mapping[str, Any], arrays: Any) -> Frame:
    name = f["array"]
    if not isinstance(name, str) or name not in arrays.files:
        raise AcquisitionFileError(f"array {name!r} missing from the pixels file")
    pixels = arrays[name]  # raises ValueError for an object (pickled) array
    if list(pixels.shape) != f["shape"] or pixels.dtype.str != f["dtype"]:
        raise AcquisitionFileError(f"array {name} is not the recorded shape and dtype")
    if pixels.ndim != 2 or pixels.dtype.kind not in "uif":
        raise AcquisitionFileError(f"array {name} is not a 2-D numeric image")
    t = f["technique"]
    bits = f["bits_stored"]
    if isinstance(bits, bool) or not isinstance(bits, int):
        raise AcquisitionFileError("bits_stored is not an integer")
    return Frame(
        pixels=pixels,
        pixel_spacing_mm=_num(f, "pixel_spacing_mm"),
        acquired_at_s=_num(f, "acquired_at_s"),
        technique=Technique(
            kv=_num(t, "kv"),
            ma=_num(t, "ma"),
            exposure_ms=_num(t, "exposure_ms"),
            focal_spot=FocalSpot(t["focal_spot"]),
            filtration_mm_al=_num(t, "filtration_mm_al"),
            filtration_mm_cu=_num(t, "filtration_mm_cu"),
        ),
        pose=PositionerPose(*(_finite(v) for v in _triple(f["pose"]))),
        collimation=CollimationField(*(_finite(v) for v in _pair(f["collimation"]))),
        dose=Dose(*(_finite(v) for v in _triple(f["dose"]))),
        bits_stored=bits,
    )


def _num(f: Mapping[str, Any], key: str) -> float:
    return _finite(f[key])


def _finite(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise AcquisitionFileError(f"not a finite number: {value!r}")
    return float(value)


def _triple(value: Any) -> tuple[Any, Any, Any]:
    if not isinstance(value, list) or len(value) != 3:
        raise AcquisitionFileError(f"expected 3 numbers, got {value!r}")
    return value[0], value[1], value[2]


def _pair(value: Any) -> tuple[Any, Any]:
    if not isinstance(value, list) or len(value) != 2:
        raise AcquisitionFileError(f"expected 2 numbers, got {value!r}")
    return value[0], value[1]
