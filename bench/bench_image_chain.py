"""Host image chain throughput at 1024² uint16 on one core, against floors in the same run.

What one fluoroscopy frame costs on the host (scheduler/imaging): offset, gain and
defect-pixel correction with the panel's calibration, then the recursive temporal filter.
Floors measured in the same run on the same frames: ``np.copyto`` of the frame into a
preallocated buffer (producing a frame at all) and a single OpenCV op (``cv2.subtract`` of
a uint16 map, saturating: the least a correction can cost). Goal: ≥ 600 frames/s
(docs/image-chain.md). The frames are raw frames of the simulated 1024² panel; its
calibration is taken as ``fluoroctl calibrate`` takes it. One thread throughout.

Run: ``python bench/bench_image_chain.py [--frames N] [--rounds R]``. The last line is JSON.
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
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402

from drivers.carm import PanelMode  # noqa: E402
from hardware_sim.carm import _calibration_images  # noqa: E402
from hardware_sim.physics import DetectorModel  # noqa: E402
from scheduler.imaging import FrameCorrector, RecursiveFilter, calibrate_mode  # noqa: E402

cv2.setNumThreads(1)
GOAL_FPS = 600.0
U16 = npt.NDArray[np.uint16]


def frames_of(det: DetectorModel, n: int) -> list[U16]:
    """``n`` raw frames: a smooth patient-like signal (20–80 % of a flat's) with noise."""
    rng = np.random.default_rng(11)
    y = np.linspace(0.2, 0.8, det.rows, dtype=np.float32)[:, None]
    x = np.linspace(0.8, 1.0, det.cols, dtype=np.float32)[None, :]
    signal = (y * x * np.float32(8000.0 / det.counts_per_kev)).astype(np.float32)
    return [det.read_out(signal, signal * np.float32(50.0), rng) for _ in range(n)]


def rates(
    steps: dict[str, Callable[[U16], object]], frames: list[U16], rounds: int
) -> dict[str, float]:
    """Frames per second of each step: the median over ``rounds`` passes over ``frames``.

    The steps take turns round by round, so a load change on the shared machine hits the
    floors and the chain alike.
    """
    for step in steps.values():
        for f in frames[:4]:
            step(f)  # warm caches and lazily built tables
    per_round: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            t0 = time.perf_counter()
            for f in frames:
                step(f)
            per_round[name].append(len(frames) / (time.perf_counter() - t0))
    return {name: statistics.median(r) for name, r in per_round.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    det = DetectorModel()
    mode = PanelMode("radiography", det.rows, det.cols, 1, det.pixel_mm)
    cal = calibrate_mode(
        mode, _calibration_images(det, "dark", 16), _calibration_images(det, "flat", 16)
    )
    frames = frames_of(det, args.frames)
    buf = np.empty_like(frames[0])
    offset16 = np.clip(np.rint(cal.offset), 0, 65535).astype(np.uint16)
    corrector = FrameCorrector(cal)
    filt = RecursiveFilter(0.5)

    def copy(f: U16) -> None:
        np.copyto(buf, f)

    def one_op(f: U16) -> None:
        cv2.subtract(f, offset16, dst=buf)

    def chain(f: U16) -> None:
        filt(corrector.correct(f))

    steps: dict[str, Callable[[U16], object]] = {
        "copy": copy,
        "single_cv_op": one_op,
        "correct": corrector.correct,
        "chain": chain,
    }
    results = rates(steps, frames, args.rounds)
    print(f"1024² uint16, one thread, {args.frames} frames × {args.rounds} rounds (median)")
    for name, fps in results.items():
        print(
            f"  {name:<13} {fps:8.0f} frames/s  {1000.0 / fps:6.3f} ms/frame  "
            f"{fps / results['chain']:5.2f}× the chain"
        )
    verdict = "meets" if results["chain"] >= GOAL_FPS else "MISSES"
    print(
        f"chain (offset+gain+defects, recursive filter): {results['chain']:.0f} frames/s, "
        f"{verdict} the goal of {GOAL_FPS:.0f}; {results['single_cv_op'] / results['chain']:.2f} "
        f"single OpenCV ops' time, {results['copy'] / results['chain']:.2f} frame copies' time"
    )
    print(
        json.dumps(
            {
                "benchmark": "image_chain",
                "size": "1024x1024 uint16",
                "threads": 1,
                "goal_fps": GOAL_FPS,
                "chain_fps": round(results["chain"], 1),
                "correct_fps": round(results["correct"], 1),
                "copy_fps": round(results["copy"], 1),
                "single_cv_op_fps": round(results["single_cv_op"], 1),
                "chain_in_cv_ops": round(results["single_cv_op"] / results["chain"], 2),
                "chain_in_copies": round(results["copy"] / results["chain"], 2),
                "meets_goal": results["chain"] >= GOAL_FPS,
            }
        )
    )


if __name__ == "__main__":
    main()
