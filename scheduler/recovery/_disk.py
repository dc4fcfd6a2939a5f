"""The images on disk, identified by their own DICOM attributes."""

from __future__ import annotations

import datetime as dt
import math
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

import pydicom

from ..outputs.dicom import XRF_IMAGE_STORAGE, acquisition_uid_for, instance_uid_for
from ..protocol import CaptureStep, FluoroStep, Protocol, TomoStep
from ._journal import (
    _is_number,
)
from ._records import (
    _FILE,
    _OWN_ENTRIES,
    _TEMP_IMAGE,
    JOURNAL,
    TORN_SUFFIX,
    IgnoredFile,
    RecoveryError,
)


@dataclass
class _Image:
    """What an image file says about itself."""

    name: str
    sop_uid: str
    step: str | None  # protocol step
    layer_mm: float | None
    instance: int
    device_s: float | None
    frames: int
    kind: str
    kerma_mgy: float
    dap_gy_cm2: float


class _DiskImages:
    """Finds and identifies the exam's images on disk (mixed into the builder)."""

    out_dir: Path
    protocol: Protocol
    step_ids: list[str]
    study: str
    uid_root: str | None
    wall0: dt.datetime | None
    ignored: list[IgnoredFile]

    def _images(self, listed: set[str]) -> dict[str, _Image]:
        """Every image file of this exam in the folder, by name; others go to ``ignored``."""
        candidates = self._step_candidates()
        images: dict[str, _Image] = {}
        seen: dict[str, str] = {}  # SOP Instance UID → file
        try:
            names = sorted(os.listdir(self.out_dir))
        except OSError as exc:
            raise RecoveryError(f"{self.out_dir}: cannot list the folder: {exc}") from None
        # Files the journal lists first: a copy of one of them is the copy, not the original.
        names.sort(key=lambda n: n not in listed)
        for name in names:
            if name in _OWN_ENTRIES or name.startswith(JOURNAL + TORN_SUFFIX):
                continue
            if _TEMP_IMAGE.match(name):
                self._ignore(name, "temporary file of an image write that never completed")
                continue
            if not name.lower().endswith(".dcm"):
                self._ignore(name, "not a file of this exam")
                continue
            path = self.out_dir / name
            try:
                mode = path.lstat().st_mode
            except OSError as exc:
                self._ignore(name, f"cannot be read ({exc.strerror or exc})")
                continue
            if not stat.S_ISREG(mode):
                self._ignore(name, "not a regular file")
                continue
            img = self._identify(name, path, candidates, listed)
            if img is None:
                continue
            if img.sop_uid in seen:
                if name not in listed:
                    self._ignore(name, f"a copy of {seen[img.sop_uid]} (same SOP Instance UID)")
                    continue
            else:
                seen[img.sop_uid] = name
            images[name] = img
        return images

    def _step_candidates(self) -> dict[str, str]:
        """Acquisition UID → protocol step, for every step that takes images."""
        return {
            acquisition_uid_for(self.study, s.id, self.uid_root): s.id
            for s in self.protocol.steps
            if isinstance(s, CaptureStep | FluoroStep | TomoStep)
        }

    def _identify(
        self, name: str, path: Path, candidates: dict[str, str], listed: set[str]
    ) -> _Image | None:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            return self._match(name, ds, candidates, listed)
        except Exception as exc:  # any damage: the file is not adopted
            if name not in listed:
                self._ignore(name, f"unreadable as DICOM ({type(exc).__name__}: {exc})")
            return None

    def _match(
        self, name: str, ds: pydicom.Dataset, candidates: dict[str, str], listed: set[str]
    ) -> _Image | None:
        """The image ``ds`` is, if it is one of this exam's; else None (and why, ignored)."""
        sop_class = str(ds.get("SOPClassUID", ""))
        study = str(ds.get("StudyInstanceUID", ""))
        sop_uid = str(ds.get("SOPInstanceUID", ""))
        number = ds.get("InstanceNumber")
        instance = int(number) if number is not None else None
        acq_uid = ds.get("AcquisitionUID")
        if name in listed:  # the journal vouches for it and names its step
            return self._image(name, ds, sop_uid, None, instance or 0)
        if study != self.study:
            self._ignore(name, f"an image of another study ({study or 'no Study Instance UID'})")
            return None
        if sop_class != XRF_IMAGE_STORAGE:
            self._ignore(name, f"not an X-ray image of this exam (SOP class {sop_class})")
            return None
        if instance is None or sop_uid != instance_uid_for(self.study, instance, self.uid_root):
            self._ignore(name, "its SOP Instance UID is not one this exam gives its images")
            return None
        step = candidates.get(str(acq_uid)) if acq_uid is not None else self._step_by_name(name)
        if step is None:
            self._ignore(name, "it names no image-taking step of this exam")
            return None
        return self._image(name, ds, sop_uid, step, instance)

    def _image(
        self, name: str, ds: pydicom.Dataset, sop_uid: str, step: str | None, instance: int
    ) -> _Image:
        return _Image(
            name,
            sop_uid,
            step,
            _ds_float(ds.get("TomoLayerHeight")),
            instance,
            self._loop_time(ds),
            _int(ds.get("NumberOfFrames"), 1),
            _kind(ds),
            _reference_kerma(ds),
            (_ds_float(ds.get("ImageAndFluoroscopyAreaDoseProduct")) or 0.0) / 10.0,
        )

    def _step_by_name(self, name: str) -> str | None:
        """Images written before the Acquisition UID existed: the step in the file name."""
        m = _FILE.match(name)
        if m is None:
            return None
        stem = m.group(2)
        for sid in sorted(self.step_ids, key=len, reverse=True):
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in sid)
            if stem == safe or stem.startswith(safe + "-"):
                return sid
        return None

    def _loop_time(self, ds: pydicom.Dataset) -> float | None:
        """The image's acquisition moment on the exam's loop time axis."""
        value = ds.get("AcquisitionDateTime")
        if value is None or self.wall0 is None:
            return None
        try:
            # DT with the exam's UTC offset (local time); an offset-less value is UTC, as
            # images written before local time were.
            stamp: dt.datetime = pydicom.valuerep.DT(str(value))
            if stamp.tzinfo is None:
                stamp = stamp.replace(tzinfo=dt.UTC)
            return (stamp - self.wall0).total_seconds()
        except (ValueError, TypeError, AttributeError):
            return None

    def _highest_number_on_disk(self) -> int:
        """New images are numbered past every ``NNN-`` name in the folder, strays included."""
        highest = 0
        for name in os.listdir(self.out_dir):
            m = re.match(r"^(\d{3,})-", name)
            if m is not None:
                highest = max(highest, int(m.group(1)))
        return highest

    def _ignore(self, name: str, reason: str) -> None:
        self.ignored.append(IgnoredFile(name, reason))


def _int(value: object, default: int) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return default


def _float(value: object) -> float:
    return float(value) if _is_number(value) else 0.0  # type: ignore[arg-type]


def _ds_float(value: object) -> float | None:
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _kind(ds: pydicom.Dataset) -> str:
    if str(ds.get("ScanOptions", "")) == "TOMO":
        return "tomo"
    if str(ds.get("RadiationSetting", "")) == "SC":
        return "fluoro"
    return "radiograph"


def _reference_kerma(ds: pydicom.Dataset) -> float:
    """Reference-point air kerma from the image's own dose data (inverse square), or 0."""
    entrance = _ds_float(ds.get("EntranceDoseInmGy"))
    d_entrance = _ds_float(ds.get("DistanceSourceToEntrance"))
    d_isocentre = _ds_float(ds.get("DistanceSourceToPatient"))
    if entrance is None or d_entrance is None or d_isocentre is None:
        return 0.0
    d_reference = d_isocentre - 150.0  # IEC 60601-2-43: 15 cm source side of the isocentre
    return entrance * (d_entrance / d_reference) ** 2 if d_reference > 0 else 0.0


# -- the one repair ---------------------------------------------------------------------------
