"""XRF DICOM writer: content read back with pydicom, validated with dicom3tools' dciodvfy."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pydicom
import pytest
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian
from pydicom.valuerep import DT

from drivers import (
    CollimationField,
    Dose,
    FocalSpot,
    Frame,
    PositionerPose,
    TablePosition,
    Technique,
)
from scheduler.outputs import dicom_series, dicom_write, sop_instance_uid_for, write_capture
from scheduler.outputs.dicom import acquisition_uid_for, instance_uid_for
from scheduler.outputs.dicom_attrs import ImageAttributes
from scheduler.outputs.dicom_ids import IMPLEMENTATION_CLASS_UID, implementation_version_name
from scheduler.outputs.dicom_series import SeriesIndex
from scheduler.records import CaptureRecord, ContrastInfo, ExamInfo, PatientInfo, TomoInfo

XRF = "1.2.840.10008.5.1.4.1.1.12.2"
SPACING = 1.0  # mm per pixel at the detector
SHAPE = (240, 200)
CET = dt.timezone(dt.timedelta(hours=1))
STUDY_START = dt.datetime(2024, 3, 5, 10, 30, 0, tzinfo=CET)  # 09:30 UTC
#: the room's zone in these tests: local time is CET (+0100) in early March
ROOM_ZONE = "Europe/Berlin"


@pytest.fixture(autouse=True)
def room_zone() -> Iterator[None]:
    """The process's local zone is the room's: set it, and restore the runner's after."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = ROOM_ZONE
    time.tzset()
    yield
    if old is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old
    time.tzset()


INJECTION = STUDY_START + dt.timedelta(minutes=4)
FIELD_CM2 = 16.0 * 18.0
DAP_GY_CM2 = 0.35
SID_MM = 1150.0


def kerma_at(distance_mm: float) -> float:
    """Air kerma (mGy) at ``distance_mm`` from the source for DAP_GY_CM2 over the field."""
    return DAP_GY_CM2 * 1000.0 / (FIELD_CM2 * (distance_mm / SID_MM) ** 2)


# Entrance surface 700 mm from the source, reference point 800 mm (isocentre 950 mm).
DOSE = Dose(
    reference_air_kerma_mgy=kerma_at(800.0),
    entrance_air_kerma_mgy=kerma_at(700.0),
    dap_gy_cm2=DAP_GY_CM2,
)


def raw_frame(signal: float = 9000.0, dense: float = 900.0, seed: int = 0) -> np.ndarray:
    """Dark offset 100 outside a 180 × 160 mm field; a dense block in its centre."""
    rng = np.random.default_rng(seed)
    img = np.full(SHAPE, 100.0)
    img[30:210, 20:180] = signal
    img[100:140, 80:120] = dense
    return np.clip(img + rng.normal(0, 10, SHAPE), 0, 65535).astype(np.uint16)


def make_exam(name: str = "Doe^Jane") -> ExamInfo:
    return ExamInfo(
        study_instance_uid="1.2.826.0.1.3680043.8.498.424242",
        series_instance_uid="1.2.826.0.1.3680043.8.498.424243",
        study_id="2403050930",
        accession_number="FX20240305093000",
        study_description="IVU standard (CPT 74400)",
        procedure_code="74400",
        study_datetime=STUDY_START,
        patient=PatientInfo("P001", name, "F", dt.date(1970, 6, 1), 72.5, 168.0),
    )


CONTRAST = ContrastInfo(
    agent="Iohexol 300",
    concentration_mg_ml=300.0,
    route="IV",
    volume_ml=50.0,
    start_time=INJECTION,
    stop_time=INJECTION + dt.timedelta(seconds=25),
    flow_rates_ml_s=(2.0, 1.0),
    flow_durations_s=(20.0, 10.0),
)


def make_record(
    kind: str = "radiograph",
    *,
    n_frames: int = 1,
    instance: int = 2,
    contrast: ContrastInfo | None = CONTRAST,
    position: str = "prone",
    frames: tuple[Frame, ...] | None = None,
) -> CaptureRecord:
    if kind == "fluoro":
        technique = Technique(70.0, 12.5, 6.0, FocalSpot.SMALL, 2.5, 0.1)
    else:
        technique = Technique(75.0, 400.0, 50.0)
    pose = PositionerPose(0.0, -15.0, SID_MM)
    field = CollimationField(160.0, 180.0)
    if frames is None:
        frames = tuple(
            Frame(raw_frame(seed=i), SPACING, 100.0 + i / 7.5, technique, pose, field, DOSE)
            for i in range(n_frames)
        )
    after = None if contrast is None else 12.0
    acquired = (INJECTION if contrast else STUDY_START) + dt.timedelta(
        seconds=12, microseconds=345000
    )
    return CaptureRecord(
        step_id="nephrogram" if kind == "radiograph" else "ureter-fluoro",
        label="Nephrogram" if kind == "radiograph" else "Ureter fluoroscopy",
        kind=kind,
        instance_number=instance,
        frames=frames,
        planned_s=12.0,
        commanded_s=12.0,
        device_s=12.1,
        acquisition_time=acquired,
        after_injection_s=after,
        patient_position=position,
        technique=technique,
        pose=pose,
        collimation=field,
        table=TablePosition(100.0, 0.0, 800.0, 10.0),
        contrast=contrast,
        pulse_rate_hz=7.5 if kind == "fluoro" else None,
        view_description="kidneys prone 15° caudad",
    )


# -- dciodvfy -----------------------------------------------------------------------------------

#: Standard attributes from other IODs added on purpose (dose reporting): Distance Source to
#: Entrance (0040,0306) and Entrance Dose in mGy (0040,8302). Nothing else may warn.
ALLOWED_NOT_IN_IOD = {(0x0040, 0x0306), (0x0040, 0x8302)}
TAG_IN_MESSAGE = re.compile(r"\((?:0x)?([0-9a-fA-F]{4}),(?:0x)?([0-9a-fA-F]{4})\)")


def dciodvfy(path: Path, *flags: str) -> list[str]:
    exe = shutil.which("dciodvfy")
    if exe is None:
        pytest.fail("dciodvfy not found: install dicom3tools (apt-get install dicom3tools)")
    proc = subprocess.run([exe, *flags, str(path)], capture_output=True, text=True, timeout=60)
    return (proc.stdout + proc.stderr).splitlines()


def assert_valid(path: Path) -> None:
    for flags in ((), ("-new",)):
        lines = dciodvfy(path, *flags)
        errors = [ln for ln in lines if ln.startswith("Error")]
        assert not errors, f"dciodvfy {' '.join(flags)}: {errors}"
        for ln in lines:
            if not ln.startswith("Warning"):
                continue
            if "Standard Extended SOP Class" in ln:
                continue
            assert "not present in standard DICOM IOD" in ln, ln
            tag = TAG_IN_MESSAGE.search(ln)
            assert tag and (int(tag[1], 16), int(tag[2], 16)) in ALLOWED_NOT_IN_IOD, ln


@pytest.mark.parametrize(
    "record",
    [
        make_record("radiograph"),
        make_record("fluoro", n_frames=4, instance=3),
        make_record("radiograph", instance=1, contrast=None, position="supine"),
        make_record("radiograph", instance=4, position="lpo"),
    ],
    ids=["radiograph", "fluoro", "scout", "oblique"],
)
def test_dciodvfy_reports_no_errors(record: CaptureRecord, tmp_path: Path) -> None:
    assert_valid(write_capture(record, make_exam(), tmp_path))


# -- content ------------------------------------------------------------------------------------


def test_radiograph_reads_back_with_the_inputs(tmp_path: Path) -> None:
    record = make_record("radiograph")
    path = write_capture(record, make_exam(), tmp_path)
    assert path.name == "002-nephrogram.dcm"
    assert path.read_bytes()[128:132] == b"DICM"
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temp file left

    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.file_meta.MediaStorageSOPClassUID == XRF
    assert ds.SOPClassUID == XRF
    assert ds.Modality == "RF"
    assert ds.PatientName == "Doe^Jane"
    assert ds.PatientBirthDate == "19700601"
    assert float(ds.PatientSize) == pytest.approx(1.68)
    assert ds.PatientPosition == "HFP"
    assert list(ds.PatientOrientation) == ["R", "F"]  # prone: image columns run to her right
    assert list(ds.ImageType) == ["ORIGINAL", "PRIMARY", "SINGLE PLANE"]
    assert ds.InstanceNumber == 2
    assert "NumberOfFrames" not in ds

    assert (ds.Rows, ds.Columns) == SHAPE
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit) == (16, 12, 11)
    assert ds.PhotometricInterpretation == "MONOCHROME2"
    pixels = ds.pixel_array
    assert pixels.shape == SHAPE and pixels.dtype == np.uint16
    assert int(pixels.max()) <= 4095
    # Dense block stored brighter (higher) than the open field around it.
    assert pixels[110:130, 90:110].mean() > pixels[40:60, 30:60].mean() + 1500

    assert float(ds.KVP) == 75.0
    assert ds.RadiationSetting == "GR"
    assert ds.ExposureTime == 50
    assert ds.XRayTubeCurrent == 400
    assert ds.Exposure == 20
    assert float(ds.ExposureTimeInuS) == pytest.approx(50_000)
    assert [float(v) for v in ds.ImagerPixelSpacing] == [SPACING, SPACING]
    assert float(ds.ImageAndFluoroscopyAreaDoseProduct) == pytest.approx(3.5)  # 0.35 Gy·cm²
    assert float(ds.EntranceDoseInmGy) == pytest.approx(kerma_at(700.0), abs=1e-5)
    assert float(ds.DistanceSourceToDetector) == 1150.0
    assert float(ds.ColumnAngulation) == -15.0
    assert float(ds.TableAngle) == 10.0
    # Distances recovered from the dose data (DAP is invariant along the beam).
    assert float(ds.DistanceSourceToEntrance) == pytest.approx(700.0, abs=0.2)
    assert float(ds.DistanceSourceToPatient) == pytest.approx(950.0, abs=0.2)  # isocentre
    assert float(ds.EstimatedRadiographicMagnificationFactor) == pytest.approx(1150 / 950, abs=1e-3)
    # Collimator: the 160 × 180 mm field is centred on the 200 × 240 px detector.
    assert (ds.CollimatorLeftVerticalEdge, ds.CollimatorRightVerticalEdge) == (21, 180)
    assert (ds.CollimatorUpperHorizontalEdge, ds.CollimatorLowerHorizontalEdge) == (31, 210)

    acquired = DT(ds.AcquisitionDateTime)
    assert acquired == record.acquisition_time  # aware datetimes compare across zones
    assert acquired.microsecond == 345000
    assert ds.AcquisitionTime == "103412.345000"  # local: 10:34:12 CET = 09:34:12 UTC
    assert ds.AcquisitionDateTime == "20240305103412.345000+0100"
    assert ds.TimezoneOffsetFromUTC == "+0100"
    assert (ds.StudyDate, ds.StudyTime) == ("20240305", "103000.000000")
    assert "+12 s after injection" in ds.ImageComments


def test_contrast_attributes_equal_the_inputs(tmp_path: Path) -> None:
    ds = pydicom.dcmread(write_capture(make_record(), make_exam(), tmp_path))
    assert ds.ContrastBolusAgent == "Iohexol 300"
    assert ds.ContrastBolusRoute == "IV"
    assert float(ds.ContrastBolusVolume) == 50.0
    assert float(ds.ContrastBolusTotalDose) == 50.0  # mL of undiluted agent
    assert ds.ContrastBolusIngredient == "IODINE"
    assert float(ds.ContrastBolusIngredientConcentration) == 300.0
    assert ds.ContrastBolusStartTime == "103400.000000"  # local time, as every TM
    assert ds.ContrastBolusStopTime == "103425.000000"
    assert [float(v) for v in ds.ContrastFlowRate] == [2.0, 1.0]
    assert [float(v) for v in ds.ContrastFlowDuration] == [20.0, 10.0]


def test_scout_has_no_contrast_module(tmp_path: Path) -> None:
    record = make_record(instance=1, contrast=None, position="supine")
    ds = pydicom.dcmread(write_capture(record, make_exam(), tmp_path))
    assert ds.PatientPosition == "HFS"
    assert list(ds.PatientOrientation) == ["L", "F"]
    assert not any(Tag(0x0018, e) in ds for e in (0x0010, 0x1040, 0x1041, 0x1048, 0x1049))
    assert "pre-contrast" in ds.ImageComments


def test_fluoro_run_is_multi_frame_cine(tmp_path: Path) -> None:
    record = make_record("fluoro", n_frames=6, instance=7)
    ds = pydicom.dcmread(write_capture(record, make_exam(), tmp_path))
    assert ds.NumberOfFrames == 6
    assert ds.FrameIncrementPointer == Tag(0x0018, 0x1063)
    assert float(ds.FrameTime) == pytest.approx(1000.0 / 7.5, abs=1e-3)
    assert ds.CineRate == 8 and ds.RecommendedDisplayFrameRate == 8
    assert ds.RadiationSetting == "SC"
    assert ds.RadiationMode == "PULSED"
    assert float(ds.AveragePulseWidth) == 6.0
    assert ds.ExposureTime == 36  # cumulative: 6 pulses × 6 ms
    assert float(ds.ExposureTimeInuS) == pytest.approx(36_000)
    assert float(ds.ImageAndFluoroscopyAreaDoseProduct) == pytest.approx(6 * 3.5)
    assert ds.pixel_array.shape == (6, *SHAPE)


def test_run_frames_share_one_window(tmp_path: Path) -> None:
    """A frame with twice the signal is stored darker, not re-normalised to look the same."""
    technique = Technique(70.0, 12.5, 6.0, FocalSpot.SMALL)
    pose, field = PositionerPose(0.0, 0.0, 1150.0), CollimationField(160.0, 180.0)
    bright = raw_frame(signal=18000.0, dense=1800.0, seed=5)
    frames = tuple(
        Frame(px, SPACING, 100.0 + i / 7.5, technique, pose, field, Dose(0.1, 0.1, 0.01))
        for i, px in enumerate([raw_frame(seed=1), raw_frame(seed=1), bright])
    )
    ds = pydicom.dcmread(write_capture(make_record("fluoro", frames=frames), make_exam(), tmp_path))
    px = ds.pixel_array.astype(float)
    assert np.array_equal(px[0], px[1])
    assert px[2][40:60, 30:60].mean() < px[0][40:60, 30:60].mean() - 100


def test_same_record_gives_same_uid_and_bytes(tmp_path: Path) -> None:
    exam, record = make_exam(), make_record()
    a = write_capture(record, exam, tmp_path / "a")
    b = write_capture(record, exam, tmp_path / "b")
    uid = pydicom.dcmread(a).SOPInstanceUID
    assert uid == pydicom.dcmread(b).SOPInstanceUID == sop_instance_uid_for(exam, record)
    assert a.read_bytes() == b.read_bytes()
    assert len(uid) <= 64 and re.fullmatch(r"[0-9]+(\.[0-9]+)*", uid)
    assert uid not in (exam.study_instance_uid, exam.series_instance_uid)
    other = make_record(instance=record.instance_number + 1)
    assert sop_instance_uid_for(exam, other) != uid
    # Rewriting never replaces the file: the existing image stays, the rewrite is kept beside.
    with pytest.raises(FileExistsError, match="not overwritten"):
        write_capture(record, exam, tmp_path / "a")
    assert a.read_bytes() == b.read_bytes()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "002-nephrogram.conflict-1.dcm",
        "002-nephrogram.dcm",
    ]


def test_failed_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_write(attrs: ImageAttributes, fp: BinaryIO) -> None:
        fp.write(b"\0" * 200)
        raise OSError("disk full")

    monkeypatch.setattr(dicom_write, "write_image", broken_write)
    with pytest.raises(OSError, match="disk full"):
        write_capture(make_record(), make_exam(), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_non_ascii_patient_name_round_trips(tmp_path: Path) -> None:
    ds = pydicom.dcmread(write_capture(make_record(), make_exam("Müller^Zoë"), tmp_path))
    assert ds.SpecificCharacterSet in ("ISO_IR 100", "ISO_IR 192")
    assert str(ds.PatientName) == "Müller^Zoë"
    assert_valid(tmp_path / "002-nephrogram.dcm")


# -- tomosynthesis --------------------------------------------------------------------------------


def tomo_record(height_mm: float = 90.0) -> CaptureRecord:
    base = make_record("radiograph", instance=5, position="supine")
    return dataclasses.replace(
        base,
        kind="tomo",
        step_id="nephrotomo-90",
        label="Nephrotomogram 9 cm",
        tomo=TomoInfo(layer_height_mm=height_mm, sweep_deg=30.0, projections=25, sweep_time_s=2.5),
    )


def test_tomo_layer_carries_the_tomography_module(tmp_path: Path) -> None:
    path = write_capture(tomo_record(), make_exam(), tmp_path)
    ds = pydicom.dcmread(path)
    assert ds.ScanOptions == "TOMO"
    assert float(ds.TomoLayerHeight) == 90.0
    assert float(ds.TomoAngle) == 30.0
    assert ds.TomoType == "LINEAR"
    assert ds.TomoClass == "TOMOSYNTHESIS"
    assert int(ds.NumberOfTomosynthesisSourceImages) == 25
    assert ds.ImageType[0] == "DERIVED"
    assert_valid(path)


def test_acquisition_uid_names_the_protocol_step(tmp_path: Path) -> None:
    """(0008,0017) ties an image to its protocol step, whatever the file is called."""
    exam = make_exam()
    ds = pydicom.dcmread(write_capture(make_record(), exam, tmp_path / "r"))
    assert ds.AcquisitionUID == acquisition_uid_for(exam.study_instance_uid, "nephrogram")
    other_study = dataclasses.replace(exam, study_instance_uid="1.2.826.0.1.3680043.8.498.1")
    assert ds.AcquisitionUID != acquisition_uid_for(other_study.study_instance_uid, "nephrogram")
    assert ds.AcquisitionUID != acquisition_uid_for(exam.study_instance_uid, "ureter-fluoro")
    # The layers of one sweep are one acquisition: they share the step's UID.
    layers = [
        dataclasses.replace(
            tomo_record(h),
            step_id=f"nephrotomo-{h:g}mm",
            instance_number=5 + i,
        )
        for i, h in enumerate((80.0, 90.0))
    ]
    uids = {pydicom.dcmread(write_capture(r, exam, tmp_path / "t")).AcquisitionUID for r in layers}
    assert uids == {acquisition_uid_for(exam.study_instance_uid, "nephrotomo")}
    assert ds.SOPInstanceUID == instance_uid_for(exam.study_instance_uid, 2)


# -- local time ------------------------------------------------------------------------------------


def test_one_offset_serves_the_whole_exam_across_a_clock_change(tmp_path: Path) -> None:
    """Summer time starts (01:00 UTC, 31 March 2024) during the exam: the start's offset stays."""
    start = dt.datetime(2024, 3, 31, 0, 30, tzinfo=dt.UTC)  # 01:30 CET
    exam = dataclasses.replace(make_exam(), study_datetime=start)
    later = dataclasses.replace(
        make_record(contrast=None), acquisition_time=start + dt.timedelta(hours=1)
    )
    ds = pydicom.dcmread(write_capture(later, exam, tmp_path))
    assert ds.TimezoneOffsetFromUTC == "+0100"
    assert ds.StudyTime == "013000.000000"
    assert ds.AcquisitionTime == "023000.000000"  # 01:30 UTC in the start's offset
    assert ds.AcquisitionDateTime == "20240331023000.000000+0100"
    assert DT(ds.AcquisitionDateTime) == later.acquisition_time


def test_naive_times_are_utc(tmp_path: Path) -> None:
    naive = STUDY_START.astimezone(dt.UTC).replace(tzinfo=None)
    exam = dataclasses.replace(make_exam(), study_datetime=naive)
    ds = pydicom.dcmread(write_capture(make_record(), exam, tmp_path))
    assert ds.StudyTime == "103000.000000"


# -- UIDs and file meta ----------------------------------------------------------------------------

ROOT_UID = "1.2.826.0.1.3680043.10.9"


def _uids(ds: pydicom.Dataset) -> list[str]:
    return [
        str(ds.SOPInstanceUID),
        str(ds.SeriesInstanceUID),
        str(ds.IrradiationEventUID),
        str(ds.AcquisitionUID),
        str(ds.file_meta.MediaStorageSOPInstanceUID),
    ]


def test_uids_are_made_under_the_rooms_root(tmp_path: Path) -> None:
    exam = dataclasses.replace(make_exam(), uid_root=ROOT_UID)
    record = make_record()
    ds = pydicom.dcmread(write_capture(record, exam, tmp_path))
    for uid in _uids(ds):
        assert uid.startswith(f"{ROOT_UID}."), uid
        assert len(uid) <= 64 and re.fullmatch(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*", uid)
    assert len(set(_uids(ds)[:4])) == 4
    assert ds.SOPInstanceUID == instance_uid_for(exam.study_instance_uid, 2, ROOT_UID)
    assert ds.SOPInstanceUID == sop_instance_uid_for(exam, record)
    assert ds.AcquisitionUID == acquisition_uid_for(exam.study_instance_uid, "nephrogram", ROOT_UID)


def test_without_a_root_uids_are_uuid_derived(tmp_path: Path) -> None:
    ds = pydicom.dcmread(write_capture(make_record(), make_exam(), tmp_path))
    for uid in _uids(ds):
        prefix, _, number = uid.partition("2.25.")
        assert prefix == "" and number.isdigit() and int(number) < 2**128, uid
        assert not number.startswith("0")
    assert ds.SOPInstanceUID == instance_uid_for(make_exam().study_instance_uid, 2)


def test_file_meta_names_fluoroctl(tmp_path: Path) -> None:
    ds = pydicom.dcmread(write_capture(make_record(), make_exam(), tmp_path))
    assert ds.file_meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert IMPLEMENTATION_CLASS_UID.is_valid and len(IMPLEMENTATION_CLASS_UID) <= 64
    name = ds.file_meta.ImplementationVersionName
    assert name == implementation_version_name()
    assert name.startswith("FLUOROCTL_") and len(name) <= 16


# -- permissions -----------------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_files_are_readable_as_the_umask_allows(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        record = make_record()
        path = write_capture(record, make_exam(), tmp_path / "exam")
        with pytest.raises(FileExistsError):
            write_capture(record, make_exam(), tmp_path / "exam")
    finally:
        os.umask(old)
    kept = path.with_name("002-nephrogram.conflict-1.dcm")
    for p in (path, kept):
        assert stat.S_IMODE(p.stat().st_mode) == 0o644 & ~umask, p.name
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o777 & ~umask


# -- series ----------------------------------------------------------------------------------------


def _series(path: Path) -> tuple[str, int, str, str, str]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return (
        str(ds.SeriesInstanceUID),
        int(ds.SeriesNumber),
        str(ds.SeriesDescription),
        str(ds.SeriesTime),
        str(ds.PatientPosition),
    )


def test_each_step_is_a_series_numbered_in_order(tmp_path: Path) -> None:
    exam = make_exam()
    scout = dataclasses.replace(
        make_record(instance=1, contrast=None, position="supine"), step_id="scout", label="Scout"
    )
    nephro = make_record(instance=2, position="supine")
    layers = [
        dataclasses.replace(
            tomo_record(h),
            step_id=f"nephrotomo-{h:g}mm",
            label=f"Nephrotomogram {h / 10:g} cm",  # as the exam engine labels a layer
            instance_number=3 + i,
        )
        for i, h in enumerate((80.0, 90.0))
    ]
    prone = dataclasses.replace(
        make_record(instance=5, position="prone"), step_id="prone", label="Prone KUB"
    )
    paths = [write_capture(r, exam, tmp_path) for r in (scout, nephro, *layers, prone)]
    series = [_series(p) for p in paths]
    assert [s[1] for s in series] == [1, 2, 3, 3, 4]
    assert [s[2] for s in series] == [
        "Scout",
        "Nephrogram",
        "Nephrotomogram",
        "Nephrotomogram",
        "Prone KUB",
    ]
    assert len({s[0] for s in series}) == 4
    assert series[2] == series[3]  # the sweep's layers: one series, one series time
    assert series[4][4] == "HFP" and {s[4] for s in series[:4]} == {"HFS"}


def test_a_series_never_mixes_patient_positions(tmp_path: Path) -> None:
    exam = make_exam()
    supine = write_capture(make_record(instance=2, position="supine"), exam, tmp_path)
    prone = write_capture(make_record(instance=3, position="prone"), exam, tmp_path)
    a, b = _series(supine), _series(prone)
    assert a[0] != b[0] and (a[1], b[1]) == (1, 2)


def test_series_numbering_ignores_other_studies_and_damaged_files(tmp_path: Path) -> None:
    other = dataclasses.replace(make_exam(), study_instance_uid="1.2.826.0.1.3680043.8.498.7")
    write_capture(make_record(instance=9), other, tmp_path)  # a stranger's image, series 1
    (tmp_path / "010-broken.dcm").write_bytes(b"\0" * 300)
    os.mkfifo(tmp_path / "011-fifo.dcm")  # opening it plainly would block the writer
    (tmp_path / "012-link.dcm").symlink_to(tmp_path / "009-nephrogram.dcm")
    path = write_capture(make_record(instance=2), make_exam(), tmp_path)
    assert _series(path)[1] == 1


def test_a_kept_series_index_reads_only_files_it_did_not_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exam's store keeps the folder's series index: a write lists the folder but reads
    only headers it has not seen, and still counts an image another writer put there."""
    exam = make_exam()
    index = SeriesIndex(tmp_path, exam.study_instance_uid)
    reads: list[str] = []
    real_header = dicom_series._header

    def counted(path: Path) -> pydicom.Dataset | None:
        reads.append(path.name)
        return real_header(path)

    monkeypatch.setattr(dicom_series, "_header", counted)
    for i, step in enumerate(("scout", "film-1", "film-2", "film-3"), start=1):
        record = dataclasses.replace(make_record(instance=i), step_id=step, label=step)
        write_capture(record, exam, tmp_path, index=index)
    assert reads == []  # its own four images: never re-read
    # another writer's image of this study (a resumed exam's, its series numbered 1 where it
    # was written): read once, and the next image of its step joins that series
    stranger = dataclasses.replace(make_record(instance=7), step_id="late", label="Late")
    monkeypatch.setattr(dicom_series, "_header", real_header)
    write_capture(stranger, exam, tmp_path / "elsewhere")
    shutil.copy(tmp_path / "elsewhere" / "007-late.dcm", tmp_path / "007-late.dcm")
    monkeypatch.setattr(dicom_series, "_header", counted)
    path = write_capture(
        dataclasses.replace(stranger, instance_number=8), exam, tmp_path, index=index
    )
    assert reads == ["007-late.dcm"]
    assert _series(path)[:2] == _series(tmp_path / "007-late.dcm")[:2]
    assert _series(path)[1] == 1
    other = dataclasses.replace(make_record(instance=9), step_id="other", label="Other")
    assert _series(write_capture(other, exam, tmp_path, index=index))[1] == 5
    assert reads == ["007-late.dcm"]


def test_tomo_layers_share_the_sweeps_irradiation_event(tmp_path: Path) -> None:
    exam = make_exam()
    events = {
        str(pydicom.dcmread(write_capture(r, exam, tmp_path)).IrradiationEventUID)
        for r in (
            dataclasses.replace(tomo_record(h), step_id=f"nephrotomo-{h:g}mm", instance_number=i)
            for i, h in enumerate((80.0, 90.0, 100.0), start=5)
        )
    }
    assert len(events) == 1
    radiographs = {
        str(
            pydicom.dcmread(
                write_capture(make_record(instance=i), exam, tmp_path / "r")
            ).IrradiationEventUID
        )
        for i in (2, 3)
    }
    assert len(radiographs) == 2 and not radiographs & events
