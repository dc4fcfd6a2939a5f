"""A room's calibration on disk: ``calibration.json`` (when, which device, the modes) and
one ``<mode>.npz`` of maps per panel mode, in the room's calibration folder.

The folder is the room option ``calibration`` (relative paths from the working directory,
as ``key_file``), else ``calibration/<station name>``: shipped room files live inside the
installed package, where nothing may be written.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from drivers.carm import PanelMode
from drivers.config import ConfigError

from ..room import Room
from .calibration import ModeCalibration, RoomCalibration

MANIFEST = "calibration.json"
#: Without the room option ``calibration_max_age_h``: a week (offset drifts with temperature;
#: vendors recalibrate offsets daily to weekly, gain monthly).
DEFAULT_MAX_AGE_H = 168.0


def calibration_dir(room: Room) -> Path:
    """Where ``room``'s calibration lives."""
    given = room.options.get("calibration")
    if isinstance(given, str) and given:
        return Path(given)
    return Path("calibration") / room.station_name


def max_age_h(room: Room) -> float:
    value = room.options.get("calibration_max_age_h", DEFAULT_MAX_AGE_H)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(
            "room", None, "options.calibration_max_age_h", f"must be a positive number: {value!r}"
        )
    return float(value)


def save(calibration: RoomCalibration, folder: Path) -> Path:
    """Write the calibration (maps first, manifest last, each atomically); its manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, cal in calibration.modes.items():
        _atomic(folder / f"{name}.npz", lambda f, c=cal: np.savez(f, **_arrays(c)))
    manifest: dict[str, Any] = {
        "device": calibration.device,
        "taken_at": calibration.taken_at.isoformat(),
        "modes": {
            name: {
                "rows": c.mode.rows,
                "cols": c.mode.cols,
                "binning": c.mode.binning,
                "pixel_spacing_mm": c.mode.pixel_spacing_mm,
                "dark_frames": c.dark_frames,
                "flat_frames": c.flat_frames,
                "defect_pixels": int(c.defects.sum()),
            }
            for name, c in calibration.modes.items()
        },
    }
    text = json.dumps(manifest, indent=2) + "\n"
    _atomic(folder / MANIFEST, lambda f: f.write(text.encode()))
    return folder / MANIFEST


def load(folder: Path) -> RoomCalibration | None:
    """The calibration in ``folder``; None if it has none; ConfigError if unreadable."""
    path = folder / MANIFEST
    if not path.exists():
        return None
    field = ""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        field = "taken_at"
        taken = dt.datetime.fromisoformat(doc["taken_at"])
        modes: dict[str, ModeCalibration] = {}
        for name, m in doc["modes"].items():
            field = f"modes.{name}"
            mode = PanelMode(
                name,
                int(m["rows"]),
                int(m["cols"]),
                int(m["binning"]),
                float(m["pixel_spacing_mm"]),
            )
            with np.load(folder / f"{name}.npz") as z:
                offset, gain, defects = z["offset"], z["gain"], z["defects"]
            for a in (offset, gain, defects):
                if a.shape != (mode.rows, mode.cols):
                    raise ValueError(f"{name}.npz maps are {a.shape}, not {mode.rows}x{mode.cols}")
            modes[name] = ModeCalibration(
                mode,
                offset.astype(np.float32),
                gain.astype(np.float32),
                defects.astype(bool),
                int(m["dark_frames"]),
                int(m["flat_frames"]),
            )
        return RoomCalibration(str(doc["device"]), _utc(taken), modes)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, zipfile.BadZipFile) as exc:
        raise ConfigError(path, None, field, f"unreadable calibration: {exc}") from None


def check(
    calibration: RoomCalibration,
    folder: Path,
    modes: tuple[PanelMode, ...],
    max_age: float,
    now: dt.datetime,
) -> None:
    """Refuse (ConfigError, one line) a calibration older than ``max_age`` hours or taken in
    other panel modes than the C-arm reads ``modes`` in."""
    path = folder / MANIFEST
    age_h = (now - calibration.taken_at).total_seconds() / 3600.0
    if age_h > max_age:
        raise ConfigError(
            path,
            None,
            "taken_at",
            f"calibration is stale: taken {age_h:.1f} h ago, the room allows {max_age:g} h "
            "(run fluoroctl calibrate ROOM)",
        )
    for mode in modes:
        cal = calibration.modes.get(mode.name)
        if cal is None:
            raise ConfigError(
                path,
                None,
                "modes",
                f"calibration is mismatched: no {mode.name} mode (run fluoroctl calibrate ROOM)",
            )
        c = cal.mode
        if (c.rows, c.cols, c.binning) != (mode.rows, mode.cols, mode.binning):
            raise ConfigError(
                path,
                None,
                f"modes.{mode.name}",
                f"calibration is mismatched: taken at {c.rows}x{c.cols} binning {c.binning}, "
                f"the panel reads {mode.rows}x{mode.cols} binning {mode.binning} "
                "(run fluoroctl calibrate ROOM)",
            )


def _arrays(cal: ModeCalibration) -> dict[str, Any]:
    return {"offset": cal.offset, "gain": cal.gain, "defects": cal.defects}


def _utc(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)


def _atomic(path: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # readable like the room file it belongs with
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
