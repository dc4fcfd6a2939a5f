"""Concept codes and units of the X-Ray Radiation Dose SR (PS3.16 DCMR; the same codes as
``pydicom.sr.codedict.codes``), and the content items the SR's tree is made of."""

from __future__ import annotations

import datetime as dt

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.sr.coding import Code
from pydicom.valuerep import format_number_as_ds

from .dicom_values import _dt, _text

DCM, SCT, UCUM = "DCM", "SCT", "UCUM"
XRAY_RADIATION_DOSE_REPORT = Code("113701", DCM, "X-Ray Radiation Dose Report")
PROCEDURE_REPORTED = Code("121058", DCM, "Procedure reported")
PROJECTION_XRAY = Code("113704", DCM, "Projection X-Ray")
HAS_INTENT = Code("363703001", SCT, "Has intent")
DIAGNOSTIC_INTENT = Code("261004008", SCT, "Diagnostic Intent")
OBSERVER_TYPE = Code("121005", DCM, "Observer Type")
DEVICE = Code("121007", DCM, "Device")
DEVICE_OBSERVER_UID = Code("121012", DCM, "Device Observer UID")
DEVICE_OBSERVER_NAME = Code("121013", DCM, "Device Observer Name")
DEVICE_OBSERVER_MANUFACTURER = Code("121014", DCM, "Device Observer Manufacturer")
DEVICE_OBSERVER_MODEL = Code("121015", DCM, "Device Observer Model Name")
DEVICE_OBSERVER_SERIAL = Code("121016", DCM, "Device Observer Serial Number")
DEVICE_OBSERVER_LOCATION = Code(
    "121017", DCM, "Device Observer Physical Location During Observation"
)
SCOPE_OF_ACCUMULATION = Code("113705", DCM, "Scope of Accumulation")
STUDY = Code("113014", DCM, "Study")
STUDY_INSTANCE_UID = Code("110180", DCM, "Study Instance UID")
ACCUMULATED_XRAY_DOSE = Code("113702", DCM, "Accumulated X-Ray Dose Data")
ACQUISITION_PLANE = Code("113764", DCM, "Acquisition Plane")
SINGLE_PLANE = Code("113622", DCM, "Single Plane")
FLUORO_DAP_TOTAL = Code("113726", DCM, "Fluoro Dose Area Product Total")
FLUORO_DOSE_RP_TOTAL = Code("113728", DCM, "Fluoro Dose (RP) Total")
TOTAL_FLUORO_TIME = Code("113730", DCM, "Total Fluoro Time")
ACQUISITION_DAP_TOTAL = Code("113727", DCM, "Acquisition Dose Area Product Total")
ACQUISITION_DOSE_RP_TOTAL = Code("113729", DCM, "Acquisition Dose (RP) Total")
TOTAL_ACQUISITION_TIME = Code("113855", DCM, "Total Acquisition Time")
DAP_TOTAL = Code("113722", DCM, "Dose Area Product Total")
DOSE_RP_TOTAL = Code("113725", DCM, "Dose (RP) Total")
TOTAL_RADIOGRAPHIC_FRAMES = Code("113731", DCM, "Total Number of Radiographic Frames")
REFERENCE_POINT_DEFINITION = Code("113780", DCM, "Reference Point Definition")
RP_15CM_FROM_ISOCENTER = Code("113860", DCM, "15cm from Isocenter toward Source")
IRRADIATION_EVENT = Code("113706", DCM, "Irradiation Event X-Ray Data")
IRRADIATION_EVENT_UID = Code("113769", DCM, "Irradiation Event UID")
IRRADIATION_EVENT_LABEL = Code("113605", DCM, "Irradiation Event Label")
DATETIME_STARTED = Code("111526", DCM, "DateTime Started")
IRRADIATION_EVENT_TYPE = Code("113721", DCM, "Irradiation Event Type")
STATIONARY_ACQUISITION = Code("113611", DCM, "Stationary Acquisition")
ROTATIONAL_ACQUISITION = Code("113613", DCM, "Rotational Acquisition")
FLUOROSCOPY = Code("44491008", SCT, "Fluoroscopy")
ACQUISITION_PROTOCOL = Code("125203", DCM, "Acquisition Protocol")
TARGET_REGION = Code("123014", DCM, "Target Region")
ABDOMEN = Code("818981001", SCT, "Abdomen")
DOSE_AREA_PRODUCT = Code("122130", DCM, "Dose Area Product")
DOSE_RP = Code("113738", DCM, "Dose (RP)")
COLLIMATED_FIELD_AREA = Code("113790", DCM, "Collimated Field Area")
FLUORO_MODE = Code("113732", DCM, "Fluoro Mode")
PULSED = Code("113631", DCM, "Pulsed")
PULSE_RATE = Code("113791", DCM, "Pulse Rate")
NUMBER_OF_PULSES = Code("113768", DCM, "Number of Pulses")
IRRADIATION_DURATION = Code("113742", DCM, "Irradiation Duration")
KVP = Code("113733", DCM, "KVP")
XRAY_TUBE_CURRENT = Code("113734", DCM, "X-Ray Tube Current")
EXPOSURE_TIME = Code("113824", DCM, "Exposure Time")
PULSE_WIDTH = Code("113793", DCM, "Pulse Width")
EXPOSURE = Code("113736", DCM, "Exposure")
POSITIONER_PRIMARY_ANGLE = Code("112011", DCM, "Positioner Primary Angle")
POSITIONER_SECONDARY_ANGLE = Code("112012", DCM, "Positioner Secondary Angle")
POSITIONER_PRIMARY_END_ANGLE = Code("113739", DCM, "Positioner Primary End Angle")
POSITIONER_SECONDARY_END_ANGLE = Code("113740", DCM, "Positioner Secondary End Angle")
DISTANCE_SOURCE_TO_ISOCENTER = Code("113748", DCM, "Distance Source to Isocenter")
DISTANCE_SOURCE_TO_DETECTOR = Code("113750", DCM, "Distance Source to Detector")
ACQUIRED_IMAGE = Code("113795", DCM, "Acquired Image")
SOURCE_OF_DOSE_INFORMATION = Code("113854", DCM, "Source of Dose Information")
AUTOMATED_DATA_COLLECTION = Code("113856", DCM, "Automated Data Collection")

# UCUM units
GY_M2 = Code("Gy.m2", UCUM, "Gy.m2")
GY = Code("Gy", UCUM, "Gy")
SECONDS = Code("s", UCUM, "s")
MS = Code("ms", UCUM, "ms")
KV = Code("kV", UCUM, "kV")
MA = Code("mA", UCUM, "mA")
UAS = Code("uA.s", UCUM, "uA.s")
M2 = Code("m2", UCUM, "m2")
DEG = Code("deg", UCUM, "deg")
MM = Code("mm", UCUM, "mm")
PULSES_PER_S = Code("{pulse}/s", UCUM, "pulse/s")
PULSES = Code("{pulses}", UCUM, "pulses")
NO_UNITS = Code("1", UCUM, "no units")


# -- content items ----------------------------------------------------------------------------


def code(code: Code) -> Dataset:
    item = Dataset()
    item.CodeValue = code.value
    item.CodingSchemeDesignator = code.scheme_designator
    item.CodeMeaning = code.meaning
    return item


def content_item(relationship: str | None, value_type: str, concept: Code) -> Dataset:
    item = Dataset()
    if relationship is not None:
        item.RelationshipType = relationship
    item.ValueType = value_type
    item.ConceptNameCodeSequence = DicomSequence([code(concept)])
    return item


def container(relationship: str, concept: Code, children: list[Dataset]) -> Dataset:
    item = content_item(relationship, "CONTAINER", concept)
    item.ContinuityOfContent = "SEPARATE"
    item.ContentSequence = DicomSequence(children)
    return item


def code_item(
    relationship: str, concept: Code, value: Code, children: list[Dataset] | None = None
) -> Dataset:
    item = content_item(relationship, "CODE", concept)
    item.ConceptCodeSequence = DicomSequence([code(value)])
    if children:
        item.ContentSequence = DicomSequence(children)
    return item


def num(relationship: str, concept: Code, value: float, unit: Code) -> Dataset:
    item = content_item(relationship, "NUM", concept)
    measured = Dataset()
    measured.MeasurementUnitsCodeSequence = DicomSequence([code(unit)])
    measured.NumericValue = ds_value(value)
    item.MeasuredValueSequence = DicomSequence([measured])
    return item


def ds_value(value: float) -> str:
    """The value as DS at the full precision 16 characters allow (whole numbers bare)."""
    x = float(value)
    if x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return format_number_as_ds(x)


def text_item(relationship: str, concept: Code, value: str) -> Dataset:
    item = content_item(relationship, "TEXT", concept)
    item.TextValue = _text(value, 1024) or "-"
    return item


def uid_item(relationship: str, concept: Code, uid: str) -> Dataset:
    item = content_item(relationship, "UIDREF", concept)
    item.UID = uid
    return item


def datetime_item(relationship: str, concept: Code, value: dt.datetime) -> Dataset:
    item = content_item(relationship, "DATETIME", concept)
    item.DateTime = _dt(value)
    return item


def image_item(sop_class: str, sop_instance: str) -> Dataset:
    item = content_item("CONTAINS", "IMAGE", ACQUIRED_IMAGE)
    ref = Dataset()
    ref.ReferencedSOPClassUID = sop_class
    ref.ReferencedSOPInstanceUID = sop_instance
    item.ReferencedSOPSequence = DicomSequence([ref])
    return item
