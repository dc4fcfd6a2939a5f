"""Soak test of crash recovery: many `fluoroctl run` processes killed at random, each resumed.

    python bench/soak_resume.py [--trials 50] [--seed 1]

Each trial kills the run after a random journal line (FLUOROCTL_CRASH_AFTER_EVENT) or after a
random wall delay, runs `fluoroctl resume`, and checks: no image lost, the final set equals
the protocol's captures without duplicates, one injection start. Prints a table and a final
JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PROTOCOL = ROOT / "configs/protocols/ivu-accelerated.yaml"
EXPECTED = sorted(["scout", "film-1min", "film-4min", "film-7min", "prone"])


def trial(rng: random.Random, out: Path) -> dict[str, object]:
    cmd = [sys.executable, "-m", "scheduler.cli", "run", str(PROTOCOL), "--out", str(out)]
    if rng.random() < 0.5:
        n = rng.randint(2, 355)
        subprocess.run(
            cmd,
            cwd=ROOT,
            capture_output=True,
            env={**os.environ, "FLUOROCTL_CRASH_AFTER_EVENT": str(n)},
        )
        how = f"event {n}"
    else:
        delay = rng.uniform(2.0, 5.5)
        p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        how = f"{delay:.2f} s"
    if not (out / "events.jsonl").exists() or (out / "summary.json").exists():
        return {"how": how, "ok": True, "resumed": False}
    before = {f.name for f in out.glob("*.dcm")}
    t0 = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "scheduler.cli", "resume", str(out)], cwd=ROOT, capture_output=True
    )
    resume_s = time.perf_counter() - t0
    after = {f.name for f in out.glob("*.dcm")}
    events = [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]
    starts = sum(1 for e in events if e["kind"] == "injection_started")
    taken = sorted(f.split("-", 1)[1].removesuffix(".dcm") for f in after)
    ok = r.returncode == 0 and before <= after and taken == EXPECTED and starts == 1
    return {
        "how": how,
        "ok": ok,
        "resumed": True,
        "lost": len(before - after),
        "starts": starts,
        "resume_s": round(resume_s, 2),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.trials):
            res = trial(rng, Path(tmp) / f"t{i}")
            results.append(res)
            print(f"{i:3d} {res['how']:>10}  ok={res['ok']}  {res}")
    failed = [r for r in results if not r["ok"]]
    print(
        json.dumps(
            {
                "bench": "soak_resume",
                "trials": len(results),
                "failed": len(failed),
                "resumed": sum(1 for r in results if r["resumed"]),
            }
        )
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
