"""Temporary output files: readable as the umask allows, never over an existing name."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from scheduler.outputs import files


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_the_kernel_applies_the_umask_to_a_new_temporary(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        fd, tmp = files.create_temporary(tmp_path / "001-scout.dcm")
    finally:
        os.umask(old)
    os.close(fd)
    assert tmp.parent == tmp_path and tmp.name.startswith(".001-scout.dcm.")
    assert tmp.name.endswith(".tmp")
    assert stat.S_IMODE(tmp.stat().st_mode) == 0o644 & ~umask


def test_a_taken_name_is_skipped_and_a_symlink_never_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("keep me")
    (tmp_path / ".image.dcm.aaaa.tmp").symlink_to(target)
    (tmp_path / ".image.dcm.bbbb.tmp").write_text("somebody's")
    names = iter(["aaaa", "bbbb", "cccc"])
    monkeypatch.setattr(files.secrets, "token_hex", lambda n: next(names))
    fd, tmp = files.create_temporary(tmp_path / "image.dcm")
    with os.fdopen(fd, "w") as f:
        f.write("new")
    assert tmp.name == ".image.dcm.cccc.tmp" and tmp.read_text() == "new"
    assert target.read_text() == "keep me"
    assert (tmp_path / ".image.dcm.bbbb.tmp").read_text() == "somebody's"


def test_no_free_name_is_an_error_not_an_overwrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".image.dcm.same.tmp").write_text("taken")
    monkeypatch.setattr(files.secrets, "token_hex", lambda n: "same")
    with pytest.raises(FileExistsError, match="no free temporary name"):
        files.create_temporary(tmp_path / "image.dcm")
    assert (tmp_path / ".image.dcm.same.tmp").read_text() == "taken"
