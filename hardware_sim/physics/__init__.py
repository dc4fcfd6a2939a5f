"""Physics core of the simulator: contrast kinetics, phantom, X-ray spectra, detector, imaging."""

from .detector import DetectorModel
from .imaging import (
    ImagingChain,
    RenderedImage,
    TechniqueParams,
    ViewGeometry,
    slab_signal,
    to_display,
)
from .kinetics import ContrastKinetics, KineticsParams
from .phantom import Finding, PatientBuild, Phantom, Primitive
from .xray import (
    MATERIALS,
    air_kerma_ugy_per_mas,
    binned_spectrum,
    iodine_mass_atten_cm2_g,
    mu_per_mm,
    spectrum,
)

__all__ = [
    "MATERIALS",
    "ContrastKinetics",
    "DetectorModel",
    "Finding",
    "ImagingChain",
    "KineticsParams",
    "PatientBuild",
    "Phantom",
    "Primitive",
    "RenderedImage",
    "TechniqueParams",
    "ViewGeometry",
    "air_kerma_ugy_per_mas",
    "binned_spectrum",
    "iodine_mass_atten_cm2_g",
    "mu_per_mm",
    "slab_signal",
    "spectrum",
    "to_display",
]
