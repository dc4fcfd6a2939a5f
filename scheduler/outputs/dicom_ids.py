"""The UIDs an exam's objects carry, derived so a restarted run can recognise its own.

Every UID fluoroctl makes is a pure function of a key (the study UID, what the UID names, a
number or step) and the room's organisation root (``dicom.uid_root`` in the room file,
carried to the writer as :attr:`~scheduler.records.ExamInfo.uid_root`):

* with a root ``R``: ``R.<decimal digits of a SHA-512 of the key>``, cut to 64 characters;
* without one: ``2.25.<UUID as a decimal integer>`` (PS3.5 §B.2), the UUID a name-based
  (version 5) UUID of the key, so no registration is needed and the same key gives the same
  UID after a restart.
"""

from __future__ import annotations

import functools
import importlib.metadata
import uuid

from pydicom.uid import UID, generate_uid

from ..records import CaptureRecord, ExamInfo

__all__ = [
    "IMPLEMENTATION_CLASS_UID",
    "acquisition_uid_for",
    "implementation_version_name",
    "instance_uid_for",
    "irradiation_event_uid_for",
    "protocol_step_of",
    "series_uid_for",
    "sop_instance_uid_for",
    "uid_from",
]

#: Implementation Class UID (0002,0012) of every file fluoroctl writes: the 2.25 form of the
#: name-based UUID of ``https://fluoroctl.invalid/dicom/implementation-class`` (namespace
#: URL). Fixed: it names the software, not a version (that is the version name's job).
IMPLEMENTATION_CLASS_UID = UID("2.25.230186375112881553095273036740983821889")
#: namespace of the name-based UUIDs behind 2.25 UIDs (a UUID of our own: no other program
#: derives the same UUIDs from the same keys)
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://fluoroctl.invalid/dicom/uid")
_MAX_UID = 64


@functools.cache
def implementation_version_name() -> str:
    """Implementation Version Name (0002,0013): ``FLUOROCTL_<installed version>``, ≤ 16
    characters (VR SH; a longer version is cut)."""
    try:
        version = importlib.metadata.version("fluoroctl")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return f"FLUOROCTL_{version}"[:16]


def uid_from(uid_root: str | None, *key: str | int) -> UID:
    """The UID of ``key`` under ``uid_root`` (or a 2.25 UUID UID without a root).

    Deterministic: the same root and key always give the same UID; the key's parts are
    joined with a separator so ``("1.2", "3")`` and ``("1.23",)`` differ.
    """
    joined = "|".join(str(k) for k in key)
    if uid_root is None:
        return UID(f"2.25.{uuid.uuid5(_NAMESPACE, joined).int}")
    prefix = f"{uid_root}."
    if len(prefix) > _MAX_UID - 10:
        raise ValueError(f"uid_root {uid_root!r} leaves too little room for a unique suffix")
    return generate_uid(prefix=prefix, entropy_srcs=[joined])


# -- identities -------------------------------------------------------------------------------


def sop_instance_uid_for(exam: ExamInfo, record: CaptureRecord) -> UID:
    """Deterministic SOP Instance UID: from the study UID and the instance number."""
    return instance_uid_for(exam.study_instance_uid, record.instance_number, exam.uid_root)


def instance_uid_for(
    study_instance_uid: str, instance_number: int, uid_root: str | None = None
) -> UID:
    """The SOP Instance UID this exam gives its image number ``instance_number``."""
    return uid_from(uid_root, study_instance_uid, "sop-instance", instance_number)


def series_uid_for(exam: ExamInfo, record: CaptureRecord) -> UID:
    """Series Instance UID: one series per protocol step and patient position.

    The position is part of the key so a series never mixes positions (a step has one).
    """
    return uid_from(
        exam.uid_root,
        exam.study_instance_uid,
        "series",
        protocol_step_of(record),
        record.patient_position,
    )


def irradiation_event_uid_for(exam: ExamInfo, record: CaptureRecord) -> UID:
    """Irradiation Event UID (0008,3010) of the exposure that made ``record``.

    A radiograph or a fluoroscopy run is one event; the layers of a tomosynthesis sweep were
    all reconstructed from one sweep, so they share its event (one per sweep, as the dose
    report counts it).
    """
    if record.tomo is not None:
        key: str | int = f"sweep|{protocol_step_of(record)}"
    else:
        key = record.instance_number
    return uid_from(exam.uid_root, exam.study_instance_uid, "irradiation-event", key)


def acquisition_uid_for(
    study_instance_uid: str, protocol_step_id: str, uid_root: str | None = None
) -> UID:
    """Acquisition UID (0008,0017): one per protocol step of the study.

    It is how an image names the step that took it (recovery matches a file to its step by
    it, not by the file's name); every layer of a tomosynthesis sweep shares the sweep's.
    """
    return uid_from(uid_root, study_instance_uid, "acquisition", protocol_step_id)


def protocol_step_of(record: CaptureRecord) -> str:
    """The protocol step a record belongs to (a tomo layer's id carries its height)."""
    if record.tomo is None:
        return record.step_id
    return record.step_id.removesuffix(f"-{record.tomo.layer_height_mm:g}mm")
