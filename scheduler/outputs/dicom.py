"""One X-Ray Radiofluoroscopic Image Storage object (SOP 1.2.840.10008.5.1.4.1.1.12.2) per capture.

A radiograph becomes a single-frame image, a fluoroscopy run a multi-frame cine image. Pixels
are stored log-transformed, inverted (dense = high value = white in MONOCHROME2) and windowed, in
12 bits (see :mod:`.display`); one window serves every frame of a run. They are display-ready
(Pixel Intensity Relationship DISP, no Modality LUT) with a VOI window framing the anatomy, so
generic pipelines (pydicom's LUT functions, dcmtk, web viewers) show the intended picture.

Conventions and assumptions (also in the module's tests):

* All DA/TM values are local time in the room's zone at the exam start
  (:func:`.dicom_values.exam_zone`); Timezone Offset From UTC (0008,0201) gives that offset
  and Acquisition DateTime (DT) carries it as a suffix. Naive datetimes are taken to be UTC.
* Content, Instance Creation and Acquisition date/time are all the acquisition moment, so
  rewriting a record produces a byte-identical file.
* One series per protocol step and patient position (:mod:`.dicom_series`); every UID is made
  under the exam's ``uid_root`` or as a 2.25 UUID UID (:mod:`.dicom_ids`); the file meta
  names fluoroctl (Implementation Class UID and Version Name).
* Patient Orientation follows the simulator's layout (rows caudad, columns toward the room's
  +X = the supine patient's left): ``L\\F`` supine, ``R\\F`` prone, ``LA\\F`` LPO, ``LP\\F`` RPO.
* The collimated field is centred on the detector.
* Distances to the patient are derived from the frame's dose data: DAP is invariant along the
  beam, so ``d = SID × sqrt(DAP / (K(d) × field area at the receptor))`` for the entrance
  (entrance air kerma) and reference point (reference air kerma, IEC 60601-2-43: 15 cm on the
  source side of the isocentre). Omitted when the dose data make no geometric sense.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian

from drivers import FOCAL_SPOT_MM, Dose

from ..records import (
    PATIENT_POSITIONS,
    CaptureRecord,
    ContrastInfo,
    ExamInfo,
    TomoInfo,
)
from .dicom_attrs import ImageAttributes
from .dicom_ids import (
    IMPLEMENTATION_CLASS_UID,
    acquisition_uid_for,
    implementation_version_name,
    instance_uid_for,
    irradiation_event_uid_for,
    protocol_step_of,
    sop_instance_uid_for,
)
from .dicom_pixels import BITS_STORED, _pixels
from .dicom_series import SeriesInfo, new_series
from .dicom_study import _patient, _study_series_equipment
from .dicom_values import _da, _ds, _dt, _lo, _local, _offset, _text, _tm, exam_zone
from .timing import format_after_injection

#: a record note that marks a last-image-hold (scheduler.imaging.chain.HELD_NOTE)
HELD_NOTE = "last image hold"

__all__ = [
    "BITS_STORED",
    "PATIENT_ORIENTATION",
    "XRF_IMAGE_STORAGE",
    "acquisition_uid_for",
    "build_attributes",
    "build_dataset",
    "instance_uid_for",
    "protocol_step_of",
    "sop_instance_uid_for",
]

XRF_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.12.2")
#: IEC 60601-2-43 patient entrance reference point: this far from the isocentre, source side.
REFERENCE_POINT_FROM_ISOCENTRE_MM = 150.0

#: Patient Orientation (0020,0020) per patient position. The simulator's image rows run caudad
#: and its columns toward the room's +X, which is the supine patient's left; prone (rolled
#: 180°) that is the patient's right; rolled ~30° left side down (LPO) the patient's left and
#: anterior, right side down (RPO) left and posterior.
PATIENT_ORIENTATION: dict[str, tuple[str, str]] = {
    "supine": ("L", "F"),
    "prone": ("R", "F"),
    "lpo": ("LA", "F"),
    "rpo": ("LP", "F"),
}


# -- modules ----------------------------------------------------------------------------------


def _image_comments(record: CaptureRecord) -> str:
    parts = [record.label or record.step_id]
    if record.view_description:
        parts.append(record.view_description)
    if record.after_injection_s is None:
        parts.append("pre-contrast")
    else:
        parts.append(f"{format_after_injection(record.after_injection_s)} after injection")
    parts.extend(record.notes)
    return _text("; ".join(parts), 10240)


def _general_image(
    ds: ImageAttributes, exam: ExamInfo, record: CaptureRecord, zone: dt.tzinfo
) -> None:
    t = _local(record.acquisition_time, zone)
    ds.InstanceNumber = record.instance_number
    ds.AcquisitionNumber = record.instance_number
    ds.PatientOrientation = list(PATIENT_ORIENTATION[record.patient_position])
    ds.ImageType = ["ORIGINAL", "PRIMARY", "SINGLE PLANE"]
    ds.AcquisitionDate = _da(t)
    ds.AcquisitionTime = _tm(t)
    ds.AcquisitionDateTime = _dt(t)
    ds.ContentDate = ds.AcquisitionDate
    ds.ContentTime = ds.AcquisitionTime
    ds.ImageComments = _image_comments(record)
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.IrradiationEventUID = irradiation_event_uid_for(exam, record)
    ds.AcquisitionUID = acquisition_uid_for(
        exam.study_instance_uid, protocol_step_of(record), exam.uid_root
    )
    if HELD_NOTE in record.notes:
        # the last-image-hold: the run's last (filtered) frame, held on the display
        ds.ImageType = ["DERIVED", "PRIMARY", "SINGLE PLANE"]
        ds.DerivationDescription = "last image hold of a fluoroscopy run (recursive filter)"


def _frame_time_ms(record: CaptureRecord) -> float:
    if record.frame_time_ms:
        return record.frame_time_ms
    times = [f.acquired_at_s for f in record.frames]
    if len(times) > 1 and times[-1] > times[0]:
        return (times[-1] - times[0]) / (len(times) - 1) * 1000.0
    return 0.0


def _cine(ds: ImageAttributes, record: CaptureRecord) -> None:
    frame_time = _frame_time_ms(record)
    ds.FrameTime = _ds(frame_time)
    if frame_time > 0:
        hz = record.pulse_rate_hz or 1000.0 / frame_time
        rate = max(1, math.floor(hz + 0.5 + 1e-9))  # half up: 7.5 p/s → 8
        ds.CineRate = rate
        ds.RecommendedDisplayFrameRate = rate
    ds.FrameDelay = "0"
    ds.PreferredPlaybackSequencing = 0  # looping


def _distances(d: Dose, area_cm2: float, sid_mm: float) -> tuple[float, float] | None:
    """(source→entrance, source→isocentre) in mm from the dose data, or None.

    The ratios of DAP to kerma are the same for one frame and for a run's sum."""
    if area_cm2 <= 0 or d.dap_gy_cm2 <= 0:
        return None
    if d.entrance_air_kerma_mgy <= 0 or d.reference_air_kerma_mgy <= 0:
        return None
    dap_mgy_cm2 = d.dap_gy_cm2 * 1000.0
    entrance = sid_mm * math.sqrt(dap_mgy_cm2 / (d.entrance_air_kerma_mgy * area_cm2))
    reference = sid_mm * math.sqrt(dap_mgy_cm2 / (d.reference_air_kerma_mgy * area_cm2))
    isocentre = reference + REFERENCE_POINT_FROM_ISOCENTRE_MM
    if not 0.0 < entrance < sid_mm or not 0.0 < isocentre < sid_mm:
        return None
    return entrance, isocentre


def _acquisition(
    ds: ImageAttributes,
    record: CaptureRecord,
    rows: int,
    cols: int,
    spacing: float,
    multi_frame: bool,
) -> None:
    tq = record.technique
    fluoro = record.kind == "fluoro"
    n = len(record.frames)
    ds.KVP = _ds(tq.kv)
    ds.RadiationSetting = "SC" if fluoro else "GR"
    # Exposure Time is cumulative over the frames (PS3.3 C.8.7.2.1.1: pulse width × frames).
    total_ms = tq.exposure_ms * n
    total_mas = tq.mas * n
    ds.XRayTubeCurrent = max(0, round(tq.ma))
    ds.XRayTubeCurrentInuA = _ds(tq.ma * 1000.0)
    ds.ExposureTime = max(0, round(total_ms))
    ds.ExposureTimeInuS = _ds(total_ms * 1000.0)
    ds.Exposure = max(0, round(total_mas))
    ds.ExposureInuAs = max(0, round(total_mas * 1000.0))
    if fluoro or multi_frame:
        ds.RadiationMode = "PULSED"
        ds.AveragePulseWidth = _ds(tq.exposure_ms)
    ds.FocalSpots = _ds(FOCAL_SPOT_MM[tq.focal_spot])
    # Filter Material/Thickness (0018,7050..7054) are not in the XRF IOD; Type of Filters is.
    filters = [
        f"{mm:g} mm {name}"
        for name, mm in (("Al", tq.filtration_mm_al), ("Cu", tq.filtration_mm_cu))
        if mm > 0
    ]
    if filters:
        ds.TypeOfFilters = _lo(" + ".join(filters))
    ds.ImagerPixelSpacing = [_ds(spacing), _ds(spacing)]
    dose = record.event_dose
    ds.ImageAndFluoroscopyAreaDoseProduct = _ds(dose.dap_gy_cm2 * 10.0)  # 1 Gy·cm² = 10 dGy·cm²
    ds.EntranceDoseInmGy = _ds(dose.entrance_air_kerma_mgy)
    ei = record.frames[0].exposure_index if record.frames else None
    if ei is not None:  # IEC 62494-1 (Exposure Index Macro, PS3.3 C.8.11.7.1)
        ds.ExposureIndex = _ds(ei.ei)
        ds.TargetExposureIndex = _ds(ei.target)
        ds.DeviationIndex = _ds(ei.deviation)

    # Collimator: the field at the receptor plane, centred, in 1-based pixel columns/rows.
    w_px = record.collimation.width_mm / spacing
    h_px = record.collimation.height_mm / spacing
    left = max(1, round((cols - w_px) / 2.0) + 1)
    right = min(cols, round((cols + w_px) / 2.0))
    upper = max(1, round((rows - h_px) / 2.0) + 1)
    lower = min(rows, round((rows + h_px) / 2.0))
    right, lower = max(left, right), max(upper, lower)
    ds.CollimatorShape = "RECTANGULAR"
    ds.CollimatorLeftVerticalEdge = left
    ds.CollimatorRightVerticalEdge = right
    ds.CollimatorUpperHorizontalEdge = upper
    ds.CollimatorLowerHorizontalEdge = lower
    # Display Shutter (same rectangle): viewers black out the collimator shadow.
    ds.ShutterShape = "RECTANGULAR"
    ds.ShutterLeftVerticalEdge = left
    ds.ShutterRightVerticalEdge = right
    ds.ShutterUpperHorizontalEdge = upper
    ds.ShutterLowerHorizontalEdge = lower
    ds.ShutterPresentationValue = 0

    # XRF Positioner.
    sid = record.pose.sid_mm
    ds.DistanceSourceToDetector = _ds(sid)
    ds.ColumnAngulation = _ds(record.pose.secondary_angle_deg)  # + = toward the head
    # The irradiated field (as the DAP meter sees it): the collimated field clipped to the panel.
    width_mm = min(record.collimation.width_mm, cols * spacing)
    height_mm = min(record.collimation.height_mm, rows * spacing)
    area_cm2 = width_mm * height_mm / 100.0
    distances = _distances(dose, area_cm2, sid)
    if distances is not None:
        entrance, isocentre = distances
        ds.DistanceSourceToPatient = _ds(round(isocentre, 1))
        ds.DistanceSourceToEntrance = _ds(round(entrance, 1))
        ds.EstimatedRadiographicMagnificationFactor = _ds(round(sid / isocentre, 4))

    # X-Ray Table.
    ds.TableMotion = "STATIC"
    ds.TableAngle = _ds(record.table.tilt_deg)


def _contrast(ds: ImageAttributes, contrast: ContrastInfo, zone: dt.tzinfo) -> None:
    ds.ContrastBolusAgent = _lo(contrast.agent)
    ds.ContrastBolusRoute = _lo(contrast.route)
    ds.ContrastBolusVolume = _ds(contrast.volume_ml)
    # Total Dose is "total amount in milliliters of the undiluted contrast agent": the agent
    # is injected undiluted, so it equals the volume.
    ds.ContrastBolusTotalDose = _ds(contrast.volume_ml)
    if contrast.start_time is not None:
        ds.ContrastBolusStartTime = _tm(_local(contrast.start_time, zone))
    if contrast.stop_time is not None:
        ds.ContrastBolusStopTime = _tm(_local(contrast.stop_time, zone))
    if contrast.flow_rates_ml_s:
        ds.ContrastFlowRate = [_ds(r) for r in contrast.flow_rates_ml_s]
    if contrast.flow_durations_s:
        ds.ContrastFlowDuration = [_ds(d) for d in contrast.flow_durations_s]
    ds.ContrastBolusIngredient = "IODINE"
    ds.ContrastBolusIngredientConcentration = _ds(contrast.concentration_mg_ml)


def _character_set(ds: ImageAttributes, texts: Sequence[str]) -> None:
    joined = "".join(texts)
    if joined.isascii():
        return
    try:
        joined.encode("latin-1")
    except UnicodeEncodeError:
        ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8
    else:
        ds.SpecificCharacterSet = "ISO_IR 100"  # Latin-1


def _tomography(ds: ImageAttributes, tomo: TomoInfo) -> None:
    """X-Ray Tomography Acquisition module; required when Scan Options contains TOMO."""
    ds.ScanOptions = "TOMO"
    ds.TomoLayerHeight = _ds(tomo.layer_height_mm)
    ds.TomoAngle = _ds(tomo.sweep_deg)
    ds.TomoTime = _ds(tomo.sweep_time_s)
    ds.TomoType = "LINEAR"
    ds.TomoClass = "TOMOSYNTHESIS"
    ds.NumberOfTomosynthesisSourceImages = tomo.projections
    # a reconstructed layer is derived from the sweep's projections
    image_type = list(ds.ImageType)
    image_type[0] = "DERIVED"
    ds.ImageType = image_type


def build_dataset(
    record: CaptureRecord,
    exam: ExamInfo,
    series: SeriesInfo | None = None,
    *,
    for_processing: bool = False,
) -> Dataset:
    """The complete dataset (with file meta) for one capture, without writing it.

    ``series`` is the series the image joins (:meth:`.dicom_series.SeriesIndex.series_for`);
    without it the image starts series number 1 of its own. ``for_processing``: the linear
    corrected image (Presentation Intent Type FOR PROCESSING) instead of the display one.
    """
    return build_attributes(record, exam, series, for_processing=for_processing).to_dataset()


def build_attributes(
    record: CaptureRecord,
    exam: ExamInfo,
    series: SeriesInfo | None = None,
    *,
    for_processing: bool = False,
) -> ImageAttributes:
    """:func:`build_dataset`'s attributes, before pydicom makes them a ``Dataset`` (what the
    image store encodes: :mod:`.dicom_attrs`)."""
    if not record.frames:
        raise ValueError(f"{record.step_id}: a capture without frames cannot be stored")
    if record.patient_position not in PATIENT_POSITIONS:
        raise ValueError(f"{record.step_id}: unknown patient position {record.patient_position!r}")
    multi_frame = record.kind == "fluoro" or len(record.frames) > 1
    sop_uid = sop_instance_uid_for(exam, record)
    zone = exam_zone(exam.study_datetime)
    if series is None:
        series = new_series(record, exam, 1, zone)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = XRF_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = implementation_version_name()
    ds = ImageAttributes(meta)

    _patient(ds, exam, zone)
    _study_series_equipment(ds, exam, record, series, zone)
    _general_image(ds, exam, record, zone)
    rows, cols, spacing = _pixels(ds, record, multi_frame, for_processing)
    if multi_frame:
        _cine(ds, record)
    _acquisition(ds, record, rows, cols, spacing, multi_frame)
    if record.contrast is not None:
        _contrast(ds, record.contrast, zone)
    if record.tomo is not None:
        _tomography(ds, record.tomo)

    ds.SOPClassUID = XRF_IMAGE_STORAGE
    ds.SOPInstanceUID = sop_uid
    ds.InstanceCreationDate = ds.ContentDate
    ds.InstanceCreationTime = ds.ContentTime
    ds.TimezoneOffsetFromUTC = _offset(zone)
    _character_set(
        ds,
        [
            exam.patient.name,
            exam.patient.patient_id,
            exam.study_description,
            exam.institution,
            exam.station_name,
            exam.manufacturer,
            exam.model_name,
            str(ds.ImageComments),
            record.contrast.agent if record.contrast else "",
        ],
    )
    return ds
