"""Exam output writers: DICOM XRF objects, display mapping and the contact sheet."""

from .contact_sheet import ContactSheetEntry, entry_for, write_contact_sheet
from .dicom import XRF_IMAGE_STORAGE, build_dataset, sop_instance_uid_for
from .dicom_write import ImageExistsError, write_capture
from .display import DisplayWindow, compute_window, to_display, to_presentation

__all__ = [
    "XRF_IMAGE_STORAGE",
    "ContactSheetEntry",
    "DisplayWindow",
    "ImageExistsError",
    "build_dataset",
    "compute_window",
    "entry_for",
    "sop_instance_uid_for",
    "to_display",
    "to_presentation",
    "write_capture",
    "write_contact_sheet",
]
