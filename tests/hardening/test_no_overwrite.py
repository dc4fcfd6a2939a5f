"""Hazard: an image on disk replaced by a later write (issue 10 item 4, "nothing is ever
overwritten").

The DICOM writer used to rename its temporary file onto the final name (``os.replace``),
silently replacing whatever image was there. Now the temporary file is hard-linked to the
final name, which fails if the name exists: the existing image keeps its bytes, the new one
is kept beside it under a name the error gives, and nothing is left half-written.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import BinaryIO

import pydicom
import pytest

from scheduler.outputs import dicom_write
from scheduler.outputs.dicom_attrs import ImageAttributes
from scheduler.outputs.dicom_write import ImageExistsError, capture_file_name, write_capture
from tests.outputs.test_dicom import make_exam, make_record


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_an_existing_image_is_never_replaced(tmp_path: Path) -> None:
    exam = make_exam()
    first = write_capture(make_record(), exam, tmp_path)
    original = first.read_bytes()
    # The same instance number again, other pixels: a second write aimed at the same name.
    other = make_record(position="supine")
    with pytest.raises(ImageExistsError) as caught:
        write_capture(other, exam, tmp_path)
    assert first.read_bytes() == original
    err = caught.value
    assert isinstance(err, FileExistsError)
    assert str(first) in str(err) and "not overwritten" in str(err)
    # Nothing acquired is lost: the new image sits beside the old one, complete.
    assert err.kept is not None and err.kept.parent == tmp_path
    assert err.kept.name in str(err)
    kept = pydicom.dcmread(err.kept)
    assert kept.PatientPosition == "HFS"  # the second record's, not the first's
    assert listing(tmp_path) == sorted([first.name, err.kept.name])


def test_a_foreign_file_at_the_name_keeps_its_bytes(tmp_path: Path) -> None:
    record = make_record()
    squatter = tmp_path / capture_file_name(record)
    squatter.write_bytes(b"somebody else's file")
    with pytest.raises(ImageExistsError):
        write_capture(record, make_exam(), tmp_path)
    assert squatter.read_bytes() == b"somebody else's file"
    assert not [n for n in listing(tmp_path) if n.endswith(".tmp")]


def test_a_file_appearing_during_the_write_is_not_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checking before writing is not enough: the name is claimed atomically at the end."""
    record = make_record()
    final = tmp_path / capture_file_name(record)
    write_image = dicom_write.write_image

    def write_and_race(attrs: ImageAttributes, fp: BinaryIO) -> None:
        final.write_bytes(b"arrived meanwhile")
        write_image(attrs, fp)

    monkeypatch.setattr(dicom_write, "write_image", write_and_race)
    with pytest.raises(ImageExistsError):
        write_capture(record, make_exam(), tmp_path)
    assert final.read_bytes() == b"arrived meanwhile"


@pytest.mark.parametrize("code", [errno.EPERM, errno.EOPNOTSUPP])
def test_without_hard_links_the_write_still_never_replaces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    """File systems without hard links (FAT, some network shares) fall back to a checked rename."""

    def no_links(src: object, dst: object, **kwargs: object) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "link", no_links)
    exam = make_exam()
    path = write_capture(make_record(), exam, tmp_path)
    assert pydicom.dcmread(path).InstanceNumber == 2
    original = path.read_bytes()
    with pytest.raises(ImageExistsError):
        write_capture(make_record(position="supine"), exam, tmp_path)
    assert path.read_bytes() == original
    assert not [n for n in listing(tmp_path) if n.endswith(".tmp")]
