"""Wall time of whole exams on the in-process simulator, and the simulated-to-wall ratio.

Reference measured in the same run: the same timeline with every device call replaced by
nothing but the clock (the scheduler's own floor), so the table shows what the devices and
the physics cost on top of scheduling.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from drivers import Clock, VirtualTimeEventLoop  # noqa: E402
from scheduler.compose import run_exam  # noqa: E402
from scheduler.protocol import load_protocol  # noqa: E402

PROTOCOLS = ["ivu-standard", "ivu-accelerated", "ivu-obstruction"]
REPEATS = 3


def run_once(name: str, out: Path) -> tuple[float, dict]:
    loop = VirtualTimeEventLoop()
    try:
        t0 = time.perf_counter()
        outcome = loop.run_until_complete(
            run_exam(
                ROOT / f"configs/protocols/{name}.yaml", ROOT / "configs/rooms/simulator.yaml", out
            )
        )
        return time.perf_counter() - t0, outcome.summary
    finally:
        loop.close()


def clock_floor(name: str) -> float:
    """Sleep through the protocol's deadlines only: the pure scheduling cost."""
    protocol = load_protocol(ROOT / f"configs/protocols/{name}.yaml")
    loop = VirtualTimeEventLoop()

    async def walk() -> None:
        clock = Clock.for_running_loop()
        for step in protocol.steps:
            await clock.sleep_until(clock.now() + (step.at or 1.0))

    try:
        t0 = time.perf_counter()
        loop.run_until_complete(walk())
        return time.perf_counter() - t0
    finally:
        loop.close()


def main() -> None:
    rows = []
    figures: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in PROTOCOLS:
            walls, summary = [], {}
            for i in range(REPEATS):
                wall, summary = run_once(name, Path(tmp) / f"{name}-{i}")
                walls.append(wall)
            totals = summary["totals"]
            wall = statistics.median(walls)
            sim = totals["exam_duration_s"]
            floor = clock_floor(name)
            figures[name] = {
                "wall_s": round(wall, 3),
                "wall_min_s": round(min(walls), 3),
                "simulated_s": sim,
                "speed_ratio": round(sim / wall, 1),
                "images": totals["images"],
                "wall_per_image_ms": round(1000 * wall / max(1, totals["frames"]), 1),
                "max_abs_lateness_ms": round(1000 * totals["max_abs_lateness_s"], 3),
                "clock_floor_ms": round(1000 * floor, 3),
            }
            rows.append((name, figures[name]))
    print(
        f"{'protocol':<18}{'wall s':>8}{'sim s':>9}{'sim/wall':>10}{'images':>8}"
        f"{'ms/frame':>10}{'late ms':>9}{'floor ms':>10}"
    )
    for name, f in rows:
        print(
            f"{name:<18}{f['wall_s']:>8.2f}{f['simulated_s']:>9.0f}{f['speed_ratio']:>10.0f}"
            f"{f['images']:>8}{f['wall_per_image_ms']:>10.1f}{f['max_abs_lateness_ms']:>9.2f}{f['clock_floor_ms']:>10.2f}"
        )
    print(f"(median of {REPEATS} runs; floor = the same deadlines with no devices, same run)")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
