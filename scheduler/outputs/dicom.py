"""One X-Ray Radiofluoroscopic Image Storage object (SOP 1.2.840.10008.5.1.4.1.1.12.2) per capture.

A radiograph becomes a single-frame image, a fluoroscopy run a multi-frame cine image. Pixels
are stored log-transformed, inverted (dense = high value = white in MONOCHROME2) and windowed, in
12 bits (see :mod:`.display`); one window serves every frame of a run.

Conventions and assumptions (also in the module's tests):

* All DA/TM values are UTC; Timezone Offset From UTC (0008,0201) says so, and Acquisition
  DateTime carries the explicit ``+0000`` suffix. Naive datetimes are taken to be UTC.
* Content, Instance Creation and Acquisition date/time are all the acquisition moment, so
  rewriting a record produces a byte-identical file.
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
import errno
import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import Tag
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import format_number_as_ds

from drivers import FOCAL_SPOT_MM, Frame

from ..records import PATIENT_POSITIONS, CaptureRecord, ContrastInfo, ExamInfo, TomoInfo
from .display import DisplayWindow, collimated_mask, compute_window, to_presentation
from .timing import format_after_injection

__all__ = [
    "BITS_STORED",
    "PATIENT_ORIENTATION",
    "XRF_IMAGE_STORAGE",
    "ImageExistsError",
    "acquisition_uid_for",
    "capture_file_name",
    "instance_uid_for",
    "protocol_step_of",
    "sop_instance_uid_for",
    "write_capture",
]

XRF_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.12.2")
BITS_STORED = 12
#: IEC 60601-2-43 patient entrance reference point: this far from the isocentre, source side.
REFERENCE_POINT_FROM_ISOCENTRE_MM = 150.0
_FRAME_TIME = Tag(0x0018, 0x1063)

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


def capture_file_name(record: CaptureRecord) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in record.step_id) or "capture"
    return f"{record.instance_number:03d}-{safe}.dcm"


# -- value formatting -------------------------------------------------------------------------


def _utc(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


def _da(t: dt.datetime | dt.date) -> str:
    return t.strftime("%Y%m%d")


def _tm(t: dt.datetime) -> str:
    return _utc(t).strftime("%H%M%S.%f")


def _dt(t: dt.datetime) -> str:
    return _utc(t).strftime("%Y%m%d%H%M%S.%f+0000")


def _ds(x: float) -> str:
    return format_number_as_ds(round(float(x), 6))


def _text(s: str, limit: int) -> str:
    """A string-VR value: no backslash (the value delimiter), no control chars, length-capped."""
    clean = "".join(" " if ord(c) < 32 else c for c in s.replace("\\", "/")).strip()
    return clean[:limit].rstrip()


def _lo(s: str) -> str:
    return _text(s, 64)


def _sh(s: str) -> str:
    return _text(s, 16)


def _age(birth: dt.date, on: dt.date) -> str:
    years = on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
    return f"{max(0, min(999, years)):03d}Y"


# -- modules ----------------------------------------------------------------------------------


def _patient(ds: Dataset, exam: ExamInfo) -> None:
    p = exam.patient
    ds.PatientName = _text(p.name, 64)
    ds.PatientID = _lo(p.patient_id)
    ds.PatientBirthDate = _da(p.birth_date) if p.birth_date else ""
    ds.PatientSex = p.sex if p.sex in ("M", "F", "O") else ""
    if p.birth_date is not None:
        ds.PatientAge = _age(p.birth_date, _utc(exam.study_datetime).date())
    if p.weight_kg is not None:
        ds.PatientWeight = _ds(p.weight_kg)
    if p.height_cm is not None:
        ds.PatientSize = _ds(p.height_cm / 100.0)  # metres


def _study_series_equipment(ds: Dataset, exam: ExamInfo, record: CaptureRecord) -> None:
    ds.StudyInstanceUID = exam.study_instance_uid
    ds.StudyDate = _da(_utc(exam.study_datetime))
    ds.StudyTime = _tm(exam.study_datetime)
    ds.ReferringPhysicianName = ""
    ds.StudyID = _sh(exam.study_id)
    ds.AccessionNumber = _sh(exam.accession_number)
    ds.StudyDescription = _lo(exam.study_description)
    if exam.procedure_code:
        code = Dataset()
        code.CodeValue = _sh(exam.procedure_code)
        code.CodingSchemeDesignator = "C4"  # CPT-4
        code.CodeMeaning = _lo(exam.study_description)
        ds.ProcedureCodeSequence = DicomSequence([code])

    ds.SeriesInstanceUID = exam.series_instance_uid
    ds.SeriesNumber = 1
    ds.Modality = "RF"
    ds.SeriesDate = ds.StudyDate
    ds.SeriesTime = ds.StudyTime
    ds.SeriesDescription = _lo(exam.study_description)
    ds.BodyPartExamined = "ABDOMEN"
    ds.PatientPosition = PATIENT_POSITIONS[record.patient_position][0]

    ds.Manufacturer = _lo(exam.manufacturer)
    ds.InstitutionName = _lo(exam.institution)
    ds.StationName = _sh(exam.station_name)
    ds.ManufacturerModelName = _lo(exam.model_name)
    ds.DeviceSerialNumber = _lo(exam.device_serial)
    ds.SoftwareVersions = _lo(exam.software_version)


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


def _general_image(ds: Dataset, exam: ExamInfo, record: CaptureRecord) -> None:
    t = record.acquisition_time
    ds.InstanceNumber = record.instance_number
    ds.AcquisitionNumber = record.instance_number
    ds.PatientOrientation = list(PATIENT_ORIENTATION[record.patient_position])
    ds.ImageType = ["ORIGINAL", "PRIMARY", "SINGLE PLANE"]
    ds.AcquisitionDate = _da(_utc(t))
    ds.AcquisitionTime = _tm(t)
    ds.AcquisitionDateTime = _dt(t)
    ds.ContentDate = ds.AcquisitionDate
    ds.ContentTime = ds.AcquisitionTime
    ds.ImageComments = _image_comments(record)
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.IrradiationEventUID = _derived_uid(
        exam.study_instance_uid, "irradiation-event", record.instance_number
    )
    ds.AcquisitionUID = acquisition_uid_for(exam.study_instance_uid, protocol_step_of(record))


def _pixels(ds: Dataset, record: CaptureRecord, multi_frame: bool) -> tuple[int, int, float]:
    frames = record.frames
    shape = frames[0].pixels.shape
    if len(shape) != 2 or any(f.pixels.shape != shape for f in frames):
        raise ValueError(f"{record.step_id}: frames must be 2-D and of one shape")
    rows, cols = int(shape[0]), int(shape[1])
    middle = frames[len(frames) // 2]
    mask = collimated_mask(
        (rows, cols),
        middle.pixel_spacing_mm,
        record.collimation.width_mm,
        record.collimation.height_mm,
    )
    window = compute_window(middle.pixels, exposed_mask=mask)
    stack = np.empty((len(frames), rows, cols), dtype="<u2")
    for i, frame in enumerate(frames):
        stack[i] = to_presentation(frame.pixels, BITS_STORED, window=window)

    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 16
    ds.BitsStored = BITS_STORED
    ds.HighBit = BITS_STORED - 1
    ds.PixelRepresentation = 0
    # Log-transformed and inverted: a higher value means less X-ray intensity. LOG requires a
    # Modality LUT back to (approximately) linear intensity; for XA/XRF it is not for display.
    ds.PixelIntensityRelationship = "LOG"
    ds.ModalityLUTSequence = DicomSequence([_intensity_lut(window)])
    ds.AcquisitionDeviceProcessingDescription = "LOG, INVERTED, WINDOWED, UNSHARP MASK"
    top = 1 << BITS_STORED
    ds.WindowCenter = _ds(top / 2)
    ds.WindowWidth = _ds(top)
    ds.WindowCenterWidthExplanation = "FULL RANGE"
    if multi_frame:
        ds.NumberOfFrames = len(frames)
        ds.FrameIncrementPointer = _FRAME_TIME
    ds.PixelData = stack.tobytes()
    return rows, cols, middle.pixel_spacing_mm


def _intensity_lut(window: DisplayWindow) -> Dataset:
    """Modality LUT: stored value → X-ray intensity above the dark offset, relative units.

    The LUT inverts the log/window mapping (not the unsharp mask), scaled so stored value 0
    (least attenuation) maps to 65535: dciodvfy wants 16-bit entries to use the 16th bit.
    """
    size = 1 << BITS_STORED
    v = np.arange(size, dtype=np.float64) / (size - 1)
    rel_log = -v * (window.log_high - window.log_low)  # log(I / I at stored value 0)
    lut = np.clip(np.rint(65535.0 * np.exp(rel_log)), 0, 65535).astype("<u2")
    item = Dataset()
    item.LUTDescriptor = [size, 0, 16]
    item.LUTExplanation = "RELATIVE X-RAY INTENSITY"
    item.ModalityLUTType = "US"  # unspecified units
    item.add_new(Tag(0x0028, 0x3006), "OW", lut.tobytes())
    return item


def _frame_time_ms(record: CaptureRecord) -> float:
    if record.frame_time_ms:
        return record.frame_time_ms
    times = [f.acquired_at_s for f in record.frames]
    if len(times) > 1 and times[-1] > times[0]:
        return (times[-1] - times[0]) / (len(times) - 1) * 1000.0
    return 0.0


def _cine(ds: Dataset, record: CaptureRecord) -> None:
    frame_time = _frame_time_ms(record)
    ds.FrameTime = _ds(frame_time)
    if frame_time > 0:
        hz = record.pulse_rate_hz or 1000.0 / frame_time
        rate = max(1, math.floor(hz + 0.5 + 1e-9))  # half up: 7.5 p/s → 8
        ds.CineRate = rate
        ds.RecommendedDisplayFrameRate = rate
    ds.FrameDelay = "0"
    ds.PreferredPlaybackSequencing = 0  # looping


def _distances(frame: Frame, area_cm2: float, sid_mm: float) -> tuple[float, float] | None:
    """(source→entrance, source→isocentre) in mm from the dose data, or None."""
    d = frame.dose
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
    ds: Dataset, record: CaptureRecord, rows: int, cols: int, spacing: float, multi_frame: bool
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
    dap_dgy_cm2 = sum(f.dose.dap_gy_cm2 for f in record.frames) * 10.0  # 1 Gy·cm² = 10 dGy·cm²
    ds.ImageAndFluoroscopyAreaDoseProduct = _ds(dap_dgy_cm2)
    ds.EntranceDoseInmGy = _ds(sum(f.dose.entrance_air_kerma_mgy for f in record.frames))

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
    distances = _distances(record.frames[len(record.frames) // 2], area_cm2, sid)
    if distances is not None:
        entrance, isocentre = distances
        ds.DistanceSourceToPatient = _ds(round(isocentre, 1))
        ds.DistanceSourceToEntrance = _ds(round(entrance, 1))
        ds.EstimatedRadiographicMagnificationFactor = _ds(round(sid / isocentre, 4))

    # X-Ray Table.
    ds.TableMotion = "STATIC"
    ds.TableAngle = _ds(record.table.tilt_deg)


def _contrast(ds: Dataset, contrast: ContrastInfo) -> None:
    ds.ContrastBolusAgent = _lo(contrast.agent)
    ds.ContrastBolusRoute = _lo(contrast.route)
    ds.ContrastBolusVolume = _ds(contrast.volume_ml)
    # Total Dose is "total amount in milliliters of the undiluted contrast agent": the agent
    # is injected undiluted, so it equals the volume.
    ds.ContrastBolusTotalDose = _ds(contrast.volume_ml)
    if contrast.start_time is not None:
        ds.ContrastBolusStartTime = _tm(contrast.start_time)
    if contrast.stop_time is not None:
        ds.ContrastBolusStopTime = _tm(contrast.stop_time)
    if contrast.flow_rates_ml_s:
        ds.ContrastFlowRate = [_ds(r) for r in contrast.flow_rates_ml_s]
    if contrast.flow_durations_s:
        ds.ContrastFlowDuration = [_ds(d) for d in contrast.flow_durations_s]
    ds.ContrastBolusIngredient = "IODINE"
    ds.ContrastBolusIngredientConcentration = _ds(contrast.concentration_mg_ml)


def _character_set(ds: Dataset, texts: Sequence[str]) -> None:
    joined = "".join(texts)
    if joined.isascii():
        return
    try:
        joined.encode("latin-1")
    except UnicodeEncodeError:
        ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8
    else:
        ds.SpecificCharacterSet = "ISO_IR 100"  # Latin-1


def _tomography(ds: Dataset, tomo: TomoInfo) -> None:
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


def build_dataset(record: CaptureRecord, exam: ExamInfo) -> Dataset:
    """The complete dataset (with file meta) for one capture, without writing it."""
    if not record.frames:
        raise ValueError(f"{record.step_id}: a capture without frames cannot be stored")
    if record.patient_position not in PATIENT_POSITIONS:
        raise ValueError(f"{record.step_id}: unknown patient position {record.patient_position!r}")
    multi_frame = record.kind == "fluoro" or len(record.frames) > 1
    sop_uid = sop_instance_uid_for(exam, record)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = XRF_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta

    _patient(ds, exam)
    _study_series_equipment(ds, exam, record)
    _general_image(ds, exam, record)
    rows, cols, spacing = _pixels(ds, record, multi_frame)
    if multi_frame:
        _cine(ds, record)
    _acquisition(ds, record, rows, cols, spacing, multi_frame)
    if record.contrast is not None:
        _contrast(ds, record.contrast)
    if record.tomo is not None:
        _tomography(ds, record.tomo)

    ds.SOPClassUID = XRF_IMAGE_STORAGE
    ds.SOPInstanceUID = sop_uid
    ds.InstanceCreationDate = ds.ContentDate
    ds.InstanceCreationTime = ds.ContentTime
    ds.TimezoneOffsetFromUTC = "+0000"
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


class ImageExistsError(FileExistsError):
    """An image file of that name exists: it was kept, not overwritten."""

    def __init__(self, path: Path, kept: Path | None) -> None:
        self.path = path
        self.kept = kept
        where = f"the new image was kept as {kept.name}" if kept else "the new image was not kept"
        super().__init__(
            errno.EEXIST, f"{path} already exists and was not overwritten; {where}", str(path)
        )

    def __str__(self) -> str:
        return str(self.args[1])


#: link() errors meaning "this file system has no hard links" (FAT, some network shares)
_NO_LINKS = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK})


def _write_atomically(ds: Dataset, path: Path) -> None:
    """Write ``ds`` to ``path`` complete or not at all, never replacing an existing file.

    The dataset goes to a temporary name and is fsynced; then the temporary file is
    hard-linked to ``path`` (``link`` fails if the name exists, atomically: no check-then-act
    window), the temporary name removed and the directory fsynced. When ``path`` exists,
    the new image is kept under a free sibling name and :class:`ImageExistsError` says where.
    """
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            ds.save_as(f, enforce_file_format=True)
            f.flush()
            os.fsync(f.fileno())
        if not _claim_name(tmp, path):
            kept = _keep_beside(tmp, path)
            _fsync_dir(path.parent)
            raise ImageExistsError(path, kept)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)  # make the new name itself durable


def _claim_name(tmp: Path, path: Path) -> bool:
    """Give ``tmp``'s content the name ``path``; False if ``path`` exists."""
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
    # No hard links here: check, then rename. Only a process ignoring the exam folder's
    # lock could slip a file in between.
    if os.path.lexists(path):
        return False
    os.rename(tmp, path)
    return True


def _keep_beside(tmp: Path, path: Path) -> Path | None:
    """Keep a new image whose name was taken: ``NNN-step.conflict-K.dcm``, K the first free."""
    for k in range(1, 1000):
        candidate = path.with_name(f"{path.stem}.conflict-{k}{path.suffix}")
        if _claim_name(tmp, candidate):
            return candidate
    return None


def _fsync_dir(directory: Path) -> None:
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def write_capture(record: CaptureRecord, exam: ExamInfo, directory: Path) -> Path:
    """Write ``record`` as ``{instance:03d}-{step_id}.dcm`` in ``directory``; return the path.

    The file appears complete or not at all (temporary file, fsync, link, directory fsync).
    An existing file of that name is never replaced: :class:`ImageExistsError` (a
    ``FileExistsError``) names it and where the new image was kept instead.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ds = build_dataset(record, exam)
    path = directory / capture_file_name(record)
    _write_atomically(ds, path)
    return path
