"""The UIDs an exam's images carry, derived so a restarted run can recognise its own."""

from __future__ import annotations

from pydicom.uid import UID, generate_uid

from ..records import CaptureRecord, ExamInfo

# -- identities -------------------------------------------------------------------------------


def sop_instance_uid_for(exam: ExamInfo, record: CaptureRecord) -> UID:
    """Deterministic SOP Instance UID: a hash of the study UID and the instance number."""
    return instance_uid_for(exam.study_instance_uid, record.instance_number)


def instance_uid_for(study_instance_uid: str, instance_number: int) -> UID:
    """The SOP Instance UID this exam gives its image number ``instance_number``."""
    return _derived_uid(study_instance_uid, "sop-instance", instance_number)


def acquisition_uid_for(study_instance_uid: str, protocol_step_id: str) -> UID:
    """Acquisition UID (0008,0017): one per protocol step of the study.

    It is how an image names the step that took it (recovery matches a file to its step by
    it, not by the file's name); every layer of a tomosynthesis sweep shares the sweep's.
    """
    return _derived_uid(study_instance_uid, "acquisition", protocol_step_id)


def protocol_step_of(record: CaptureRecord) -> str:
    """The protocol step a record belongs to (a tomo layer's id carries its height)."""
    if record.tomo is None:
        return record.step_id
    return record.step_id.removesuffix(f"-{record.tomo.layer_height_mm:g}mm")


def _derived_uid(study_instance_uid: str, kind: str, key: int | str) -> UID:
    # One joined string with separators: generate_uid concatenates its sources without any,
    # so ["1.2.3", "12"] and ["1.2.31", "2"] would otherwise collide. (With prefix=None
    # generate_uid ignores the entropy sources and returns a random UUID UID, so the pydicom
    # root prefix is used, as for the study UID.)
    return generate_uid(entropy_srcs=[f"{study_instance_uid}|{kind}|{key}"])
