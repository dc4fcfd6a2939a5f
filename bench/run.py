"""Run every benchmark: ``python bench/run.py [NAME ...]``.

Each bench_*.py prints a readable table and, as its last line, one JSON object with its
figures; this runner collects those lines into bench/results.jsonl (appended, timestamped).
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    benches = sorted(HERE.glob("bench_*.py"))
    if argv:
        benches = [b for b in benches if any(name in b.stem for name in argv)]
    failed = 0
    results = []
    for bench in benches:
        print(f"\n=== {bench.stem} ===", flush=True)
        proc = subprocess.run(
            [sys.executable, str(bench)], capture_output=True, text=True, cwd=HERE.parent
        )
        print(proc.stdout, end="")
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            failed += 1
            continue
        last = proc.stdout.strip().splitlines()[-1]
        results.append(
            {"bench": bench.stem, "at": dt.datetime.now(dt.UTC).isoformat(), **json.loads(last)}
        )
    with (HERE / "results.jsonl").open("a", encoding="utf-8") as f:
        for r in results:
            f.write(json.dumps(r) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
