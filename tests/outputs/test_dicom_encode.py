"""The store's own Part 10 encoder writes exactly what pydicom's writer writes."""

from __future__ import annotations

import dataclasses
import io
import warnings

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from scheduler.outputs import build_dataset
from scheduler.outputs.dicom import build_attributes
from scheduler.outputs.dicom_encode import (
    Unsupported,
    encode_attributes,
    encode_header,
    write_image,
    write_part10,
)
from scheduler.records import CaptureRecord, ExamInfo, RequestInfo

from .test_dicom import make_exam, make_record, tomo_record

REQUEST = RequestInfo(
    requested_procedure_id="RP7",
    requested_procedure_description="IVU",
    procedure_code=("74400", "C4", "Urography (pyelography), intravenous"),
    scheduled_procedure_step_id="SPS7",
    scheduled_procedure_step_description="IVU with tomography",
    referring_physician="Ref^Erin",
)


def pydicom_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def ours(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    write_part10(ds, buffer)
    return buffer.getvalue()


def assert_same_file(ds: Dataset) -> None:
    header, _ = encode_header(ds)  # the fast path, not the fallback
    expected, got = pydicom_bytes(ds), ours(ds)
    if got != expected:
        at = next(
            (i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b),
            min(len(got), len(expected)),
        )
        pytest.fail(f"differs from pydicom's file at byte {at}: {got[at - 16 : at + 32]!r}")
    assert len(header) > 132


def cases() -> dict[str, tuple[CaptureRecord, ExamInfo, bool]]:
    exam = make_exam()
    ordered = dataclasses.replace(exam, request=REQUEST)
    return {
        "radiograph": (make_record("radiograph"), exam, False),
        "fluoro run (AT, multi-frame)": (
            make_record("fluoro", n_frames=4, instance=3),
            exam,
            False,
        ),
        "scout": (make_record("radiograph", contrast=None, position="supine"), exam, False),
        "tomography layer": (tomo_record(), exam, False),
        "for processing": (make_record("radiograph"), exam, True),
        "ordered (nested sequences)": (make_record("radiograph", position="rpo"), ordered, False),
        "latin-1 name": (make_record(), make_exam("Müller^Jürgen"), False),
        "UTF-8 name, odd lengths": (make_record(), make_exam("Yamada^Tarō=山田^太郎"), False),
    }


@pytest.mark.parametrize("name", list(cases()))
def test_image_objects_are_byte_identical_to_pydicoms(name: str) -> None:
    record, exam, for_processing = cases()[name]
    assert_same_file(build_dataset(record, exam, for_processing=for_processing))


@pytest.mark.parametrize("name", list(cases()))
def test_image_attributes_encode_as_their_dataset_does(name: str) -> None:
    """The store's path: attributes encoded without becoming a Dataset at all."""
    record, exam, for_processing = cases()[name]
    attrs = build_attributes(record, exam, for_processing=for_processing)
    header, last = encode_attributes(attrs)  # the fast path, not the fallback
    expected = pydicom_bytes(attrs.to_dataset())
    assert header + bytes(last or b"") == expected
    buffer = io.BytesIO()
    write_image(attrs, buffer)
    assert buffer.getvalue() == expected


def test_attribute_values_pydicom_converts_are_written_as_it_writes_them() -> None:
    """Strings pydicom strips (DS, IS) or splits at backslashes, numbers as IS, one-item
    lists, empty values, an explicit character set."""
    record, exam, _ = cases()["radiograph"]
    attrs = build_attributes(record, exam)
    attrs.SpecificCharacterSet = "ISO_IR 100"
    attrs.PatientComments = "Gefäß\\kept"  # LT keeps its backslash
    attrs.OtherPatientIDs = "A\\B"  # LO: two values
    attrs.PatientWeight = " 72.5 "
    attrs.PixelSpacing = [" 0.1", "0.2 "]
    attrs.ReferencedFrameNumber = [1, " 22 "]
    attrs.ImageType = ["ORIGINAL"]
    attrs.ReferringPhysicianName = ""
    attrs.AdmittingDiagnosesDescription = []
    attrs.RecommendedDisplayCIELabValue = [1, 2, 3]
    attrs.SimpleFrameList = [7]
    attrs.TableOfYBreakPoints = [1.5, 2]
    header, last = encode_attributes(attrs)
    assert header + bytes(last or b"") == pydicom_bytes(attrs.to_dataset())


@pytest.mark.parametrize(
    "keyword, value",
    [
        ("PatientWeight", 72.5),  # DS from a float: pydicom's number formatting
        ("ImageType", ("A", "B")),  # a tuple: pydicom takes it as one value
        ("LUTDescriptor", [256, 0, 16]),  # an ambiguous VR
        ("SpecificCharacterSet", ["ISO 2022 IR 6", "ISO 2022 IR 87"]),
        ("InstanceNumber", 3.0),  # IS from a float
        ("PatientName", b"Doe^Jane"),  # text from bytes (pydicom decodes them)
    ],
)
def test_attribute_values_it_does_not_follow_go_to_pydicom(keyword: str, value: object) -> None:
    record, exam, _ = cases()["radiograph"]
    attrs = build_attributes(record, exam)
    setattr(attrs, keyword, value)
    with pytest.raises(Unsupported):
        encode_attributes(attrs)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_image(attrs, buffer)
        assert buffer.getvalue() == pydicom_bytes(attrs.to_dataset())


def file_dataset() -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = uid = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = "1.2.3.4"
    ds.file_meta.ImplementationVersionName = "TEST_1"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = uid
    return ds


def test_every_value_representation_it_writes_matches() -> None:
    ds = file_dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "Ödön^Ágnes=山田^花子"
    ds.OtherPatientNames = ["A^B", "Çelik^Ö"]
    ds.PatientComments = "odd"  # LT, padded
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.PixelSpacing = ["0.1", "0.25"]  # DS, multi
    ds.ReferencedFrameNumber = ["1", "22"]  # IS, multi
    ds.RetrieveAETitle = "AE1"  # AE, odd
    ds.PatientAge = "042Y"  # AS
    ds.AcquisitionDateTime = "20260304093001.5+0100"
    ds.Rows = 3  # US
    ds.LUTDescriptor = [256, 0, 16]  # US or SS: ambiguous, resolved by pydicom
    del ds.LUTDescriptor
    ds.SimpleFrameList = [1, 70000]  # UL, multi
    ds.PixelPaddingRangeLimit = 5  # US or SS: ambiguous
    del ds.PixelPaddingRangeLimit
    ds.TableOfYBreakPoints = [1.5, -2.25]  # FD
    ds.ReferencePixelPhysicalValueX = 1.25  # FD
    ds.RecommendedDisplayCIELabValue = [1, 2, 3]  # US multi
    ds.FrameIncrementPointer = [Tag(0x0018, 0x1063), Tag(0x0018, 0x1065)]  # AT, multi
    ds.add_new(0x00091010, "LO", "private")
    ds.add_new(0x00090010, "LO", "FLUOROCTL TEST")
    ds.add_new(0x00091011, "SS", [-2, 3])
    ds.add_new(0x00091012, "FL", [0.5])
    ds.add_new(0x00091013, "SL", -70000)
    ds.add_new(0x00091014, "OB", b"\x01\x02\x03")  # odd, padded with a zero byte
    ds.add_new(0x00091015, "UT", "unlimited text ü")
    ds.add_new(0x00091016, "ST", "")
    ds.add_new(0x00110000, "UL", 12)  # a retired group length: not written
    inner = Dataset()
    inner.SpecificCharacterSet = "ISO_IR 100"  # an item's own character set
    inner.CodeMeaning = "Gefäß"
    inner.ConceptNameCodeSequence = Sequence([Dataset(), Dataset()])
    ds.ReferencedImageSequence = Sequence([inner, Dataset()])
    ds.PixelData = b"\x00\x01" * 6
    ds.BitsAllocated = 16
    assert_same_file(ds)


def test_what_it_does_not_write_is_left_to_pydicom() -> None:
    implicit = file_dataset()
    implicit.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    iso2022 = file_dataset()
    iso2022.SpecificCharacterSet = ["ISO 2022 IR 6", "ISO 2022 IR 87"]
    iso2022.PatientName = "Yamada^Tarou=山田^太郎"
    ambiguous = file_dataset()
    ambiguous.PixelPaddingValue = 5
    unencodable = file_dataset()
    unencodable.PatientName = "山田"  # not in the default repertoire: pydicom replaces
    too_long = file_dataset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns: over LT's 10240 characters
        too_long.PatientComments = "x" * 70000  # over 64 KiB: pydicom writes it as UN
    without_version = file_dataset()
    del without_version.file_meta.ImplementationClassUID
    for ds in (implicit, iso2022, ambiguous, unencodable, too_long, without_version):
        with pytest.raises(Unsupported):
            encode_header(ds)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns about the replaced and the long
            assert ours(ds) == pydicom_bytes(ds)
