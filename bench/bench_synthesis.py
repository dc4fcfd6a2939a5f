"""Frame synthesis rate of the imaging chain's fast path, against a plain copy of the frame.

A fluoroscopy run as the simulator renders it: the view and technique stay, the contrast
kinetics advance 1/30 s per frame (concentrations, volumes and ureteric peristalsis change),
every frame goes through ``ImagingChain.render`` (mean signal, scatter, noise, uint16
read-out).  Both panel modes: 1024² (radiography) and 512² (2×2-binned fluoroscopy, as
``hardware_sim/carm.py`` uses).  Reference measured in the same run: ``np.copyto`` of the same
uint16 frame into a preallocated buffer — the floor for producing a frame at all.  The exact
(bin-by-bin) path is timed on a few frames for scale.  One thread throughout.

Run: ``python bench/bench_synthesis.py [--frames N] [--rounds R]``.  The last line is JSON.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from hardware_sim.physics import (  # noqa: E402
    ContrastKinetics,
    DetectorModel,
    ImagingChain,
    KineticsParams,
    PatientBuild,
    Phantom,
    TechniqueParams,
    ViewGeometry,
)

cv2.setNumThreads(1)

FLUORO_FPS = 30.0
START_S = 600.0  # 10 min after the injection: kidneys, calyces, ureters and bladder opacified
VIEW = ViewGeometry()  # supine KUB field
TECHNIQUE = TechniqueParams(kvp=75.0, mas=0.2)  # one fluoroscopy pulse
PANELS = {
    "1024": DetectorModel(),
    "512 (binned)": DetectorModel(rows=512, cols=512, pixel_mm=0.834),
}


def fluoro_run(frames: int) -> list[tuple[dict[str, float], dict[str, float], float]]:
    """(concentrations, volumes, time) per frame of a 30 fps run starting at START_S."""
    k = ContrastKinetics(KineticsParams())
    k.advance(40.0, 15000.0 / 40.0)  # 15 g iodine over 40 s
    k.advance_to(START_S)
    out = []
    for _ in range(frames):
        k.advance(1.0 / FLUORO_FPS)
        out.append((k.concentrations_mg_ml(), k.volumes_ml(), k.time_s))
    return out


def time_renders(
    chain: ImagingChain, run: list[tuple[dict[str, float], dict[str, float], float]]
) -> float:
    t0 = time.perf_counter()
    for conc, vols, t in run:
        chain.render(VIEW, TECHNIQUE, conc, vols, t)
    return (time.perf_counter() - t0) / len(run)


def time_copy(frame: np.ndarray, n: int) -> float:
    dst = np.empty_like(frame)
    np.copyto(dst, frame)
    t0 = time.perf_counter()
    for _ in range(n):
        np.copyto(dst, frame)
    return (time.perf_counter() - t0) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200, help="frames per timed round")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds (median reported)")
    ap.add_argument("--exact-frames", type=int, default=10, help="frames of the exact path")
    args = ap.parse_args()

    phantom = Phantom(PatientBuild())
    run = fluoro_run(args.frames)
    results: dict[str, dict[str, float]] = {}
    for name, det in PANELS.items():
        chain = ImagingChain(phantom, det, seed=1)
        t0 = time.perf_counter()
        chain.render(VIEW, TECHNIQUE, *run[0][:2], run[0][2])  # view maps; exact path
        first_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        chain.render(VIEW, TECHNIQUE, *run[1][:2], run[1][2])  # builds the synthesis precompute
        precompute_s = time.perf_counter() - t0
        time_renders(chain, run[:20])  # warm caches, allocator, noise bank
        fast = [time_renders(chain, run) for _ in range(args.rounds)]
        frame = chain.render(VIEW, TECHNIQUE, *run[-1][:2], run[-1][2]).pixels
        copy = [time_copy(frame, max(args.frames, 200)) for _ in range(args.rounds)]
        chain.fast = False
        exact = time_renders(chain, run[: args.exact_frames])
        chain.fast = True
        f_s, c_s = statistics.median(fast), statistics.median(copy)
        results[name] = {
            "pixels": det.rows * det.cols,
            "fast_ms": f_s * 1e3,
            "fast_fps": 1.0 / f_s,
            "fast_fps_best": 1.0 / min(fast),
            "copy_ms": c_s * 1e3,
            "copy_fps": 1.0 / c_s,
            "fast_over_copy": f_s / c_s,
            "exact_ms": exact * 1e3,
            "speedup_vs_exact": exact / f_s,
            "core_share_at_30fps": f_s * FLUORO_FPS,
            "first_frame_s": first_s,
            "precompute_s": precompute_s,
        }

    print(f"Frame synthesis, one thread: {args.frames} frames × {args.rounds} rounds (median), ")
    print(f"a {FLUORO_FPS:.0f} fps fluoroscopy run from {START_S:.0f} s after injection, "
          f"{TECHNIQUE.kvp:.0f} kV {TECHNIQUE.mas} mAs, KUB view")  # fmt: skip
    head = (
        f"{'panel':>13} | {'fast ms':>7} {'fast fps':>8} | {'copy ms':>7} {'copy fps':>8} | "
        f"{'fast/copy':>9} | {'exact ms':>8} {'speed-up':>8} | {'30 fps share':>12}"
    )
    print(head)
    print("-" * len(head))
    for name, r in results.items():
        print(
            f"{name:>13} | {r['fast_ms']:7.2f} {r['fast_fps']:8.0f} | {r['copy_ms']:7.3f} "
            f"{r['copy_fps']:8.0f} | {r['fast_over_copy']:8.1f}× | {r['exact_ms']:8.1f} "
            f"{r['speedup_vs_exact']:7.1f}× | {100 * r['core_share_at_30fps']:11.1f}%"
        )
    print(
        "first render of a view (view maps, exact path) / second (synthesis precompute), s: "
        + ", ".join(
            f"{n}: {r['first_frame_s']:.2f} / {r['precompute_s']:.2f}" for n, r in results.items()
        )
    )
    summary = {
        "benchmark": "frame_synthesis",
        "frames": args.frames,
        "rounds": args.rounds,
        "goal_fps_1024": 200,
        "fps_1024": round(results["1024"]["fast_fps"], 1),
        "fps_512": round(results["512 (binned)"]["fast_fps"], 1),
        "copy_fps_1024": round(results["1024"]["copy_fps"], 1),
        "copy_fps_512": round(results["512 (binned)"]["copy_fps"], 1),
        "fast_over_copy_1024": round(results["1024"]["fast_over_copy"], 2),
        "fast_over_copy_512": round(results["512 (binned)"]["fast_over_copy"], 2),
        "core_share_30fps_1024": round(results["1024"]["core_share_at_30fps"], 4),
        "core_share_30fps_512": round(results["512 (binned)"]["core_share_at_30fps"], 4),
        "exact_ms_1024": round(results["1024"]["exact_ms"], 2),
        "exact_ms_512": round(results["512 (binned)"]["exact_ms"], 2),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
