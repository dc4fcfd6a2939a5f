"""A stored image as generic viewers present it: pydicom's LUT pipeline and dcmtk's dcm2pnm.

The simulator's phantom is rendered (kidney view, plain and at the nephrogram) and stored;
the presented picture must look like a radiograph: bone and contrast-filled kidneys brighter
than soft tissue, the contrast making the kidneys brighter, the field neither washed out nor
crushed; dcm2pnm with the stored window must give the same picture.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from drivers import CollimationField, Dose, Frame, PositionerPose, Technique
from hardware_sim.physics import (
    ContrastKinetics,
    DetectorModel,
    ImagingChain,
    KineticsParams,
    PatientBuild,
    Phantom,
    TechniqueParams,
    ViewGeometry,
)
from scheduler.outputs import write_capture
from scheduler.records import CaptureRecord

from .test_dicom import make_exam, make_record

KIDNEYS = ViewGeometry(centre_z_mm=90.0, field_height_mm=300.0)
TECHNIQUE = TechniqueParams(kvp=72.0, mas=32.0)
#: soft tissue of the flank, lateral to each kidney at the level of L1 (patient mm)
FLANKS = ((120.0, -47.6, 117.0), (-120.0, -47.6, 117.0))


@dataclasses.dataclass(frozen=True)
class Scene:
    phantom: Phantom
    chain: ImagingChain
    plain: np.ndarray
    nephrogram: np.ndarray
    spacing_mm: float


@pytest.fixture(scope="module")
def scene() -> Scene:
    phantom = Phantom(PatientBuild(seed=1))
    chain = ImagingChain(phantom, DetectorModel(seed=1), seed=1)
    k = ContrastKinetics(KineticsParams())
    k.advance(40.0, 15000.0 / 40.0)
    k.advance_to(90.0)
    zero = dict.fromkeys(k.concentrations_mg_ml(), 0.0)
    nephro = chain.render(KIDNEYS, TECHNIQUE, k.concentrations_mg_ml(), k.volumes_ml(), k.time_s)
    plain = chain.render(KIDNEYS, TECHNIQUE, zero, k.volumes_ml(), k.time_s)
    return Scene(phantom, chain, plain.pixels, nephro.pixels, nephro.pixel_spacing_mm)


def _record(scene: Scene, pixels: np.ndarray, instance: int) -> CaptureRecord:
    technique = Technique(72.0, 500.0, 64.0)
    pose = PositionerPose(0.0, 0.0, KIDNEYS.sid_mm)
    field = CollimationField(KIDNEYS.field_width_mm, KIDNEYS.field_height_mm)
    frame = Frame(pixels, scene.spacing_mm, 10.0, technique, pose, field, Dose(1.0, 1.2, 0.5))
    base = make_record(instance=instance, position="supine")
    return dataclasses.replace(
        base, frames=(frame,), technique=technique, pose=pose, collimation=field
    )


def presented(ds: pydicom.Dataset) -> np.ndarray:
    """Modality LUT, then the first VOI (pydicom), as 0..1 with 1 = white."""
    out = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds).astype(np.float64)
    shown = out / output_top(ds)
    return 1.0 - shown if ds.PhotometricInterpretation == "MONOCHROME1" else shown


def output_top(ds: pydicom.Dataset) -> float:
    """The largest value pydicom's VOI stage outputs (its output range: 0 .. this)."""
    if "ModalityLUTSequence" in ds:
        return float((1 << int(ds.ModalityLUTSequence[0].LUTDescriptor[2])) - 1)
    return float((1 << int(ds.BitsStored)) - 1)


def dcm2pnm(path: Path, tmp: Path) -> np.ndarray:
    """dcmtk's rendering with the first stored VOI window, as 0..1 with 1 = white."""
    exe = shutil.which("dcm2pnm")
    if exe is None:
        pytest.fail("dcm2pnm not found: install dcmtk (apt-get install dcmtk)")
    out = tmp / f"{path.stem}.pgm"
    subprocess.run([exe, "+Wi", "1", "+op", str(path), str(out)], check=True, timeout=60)
    data = out.read_bytes()
    # binary PGM: "P5\n<w> <h>\n<max>\n" then the samples
    parts = data.split(maxsplit=4)
    assert parts[0] == b"P5"
    w, h, top = int(parts[1]), int(parts[2]), int(parts[3])
    dtype = np.uint8 if top < 256 else np.dtype(">u2")
    img = np.frombuffer(parts[4][: w * h * np.dtype(dtype).itemsize], dtype=dtype)
    return img.reshape(h, w).astype(np.float64) / top


def roi(img: np.ndarray, rc: tuple[float, float], half: int = 8) -> float:
    r, c = round(rc[0]), round(rc[1])
    return float(img[r - half : r + half, c - half : c + half].mean())


def _regions(scene: Scene, img: np.ndarray) -> dict[str, float]:
    def at(point: tuple[float, float, float]) -> float:
        return roi(img, scene.chain.project(KIDNEYS, point))

    marks = scene.phantom.landmarks
    return {
        "bone": at(marks["L1"]),
        "kidneys": (at(marks["kidney_lateral_left"]) + at(marks["kidney_lateral_right"])) / 2,
        "soft tissue": sum(at(p) for p in FLANKS) / len(FLANKS),
    }


def _field(ds: pydicom.Dataset, inset: int = 8) -> tuple[slice, slice]:
    return (
        slice(ds.CollimatorUpperHorizontalEdge + inset, ds.CollimatorLowerHorizontalEdge - inset),
        slice(ds.CollimatorLeftVerticalEdge + inset, ds.CollimatorRightVerticalEdge - inset),
    )


@pytest.fixture(scope="module")
def stored(scene: Scene, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("display")
    exam = make_exam()
    return {
        "plain": write_capture(_record(scene, scene.plain, 1), exam, out),
        "nephrogram": write_capture(_record(scene, scene.nephrogram, 2), exam, out),
    }


def test_pixels_are_display_ready_without_a_modality_lut(stored: dict[str, Path]) -> None:
    ds = pydicom.dcmread(stored["nephrogram"])
    assert ds.PixelIntensityRelationship == "DISP"
    assert "ModalityLUTSequence" not in ds
    assert "RescaleSlope" not in ds
    assert ds.PhotometricInterpretation == "MONOCHROME2"
    assert "WindowCenter" in ds and "WindowWidth" in ds


@pytest.mark.parametrize("name", ["plain", "nephrogram"])
def test_pydicom_pipeline_shows_a_radiograph(
    scene: Scene, stored: dict[str, Path], name: str
) -> None:
    ds = pydicom.dcmread(stored[name])
    shown = presented(ds)
    inside = shown[_field(ds)]
    assert float((inside >= 0.999).mean()) < 0.03, "washed out"
    # black: only the direct exposure beside the body, as on film
    assert float((inside <= 0.001).mean()) < 0.10, "crushed"
    r = _regions(scene, shown)
    assert r["bone"] > r["kidneys"] > r["soft tissue"] + 0.1, r


def test_contrast_makes_the_kidneys_brighter(scene: Scene, stored: dict[str, Path]) -> None:
    plain = _regions(scene, presented(pydicom.dcmread(stored["plain"])))
    nephro = _regions(scene, presented(pydicom.dcmread(stored["nephrogram"])))
    assert nephro["kidneys"] - nephro["soft tissue"] > plain["kidneys"] - plain["soft tissue"]


@pytest.mark.parametrize("name", ["plain", "nephrogram"])
def test_dcm2pnm_gives_the_same_picture(
    scene: Scene, stored: dict[str, Path], name: str, tmp_path: Path
) -> None:
    ds = pydicom.dcmread(stored[name])
    ours = presented(ds)
    theirs = dcm2pnm(stored[name], tmp_path)
    assert theirs.shape == ours.shape
    field = _field(ds)
    assert float(np.abs(theirs[field] - ours[field]).mean()) < 0.02
    r = _regions(scene, theirs)
    assert r["bone"] > r["kidneys"] > r["soft tissue"] + 0.1, r
