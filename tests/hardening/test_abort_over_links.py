"""Hazard (over real links): two Ctrl-C in quick succession cut the abort short while the
CLI still claimed every device was made safe.

`sim serve` at 60× (serial ptys, USB, MQTT), `fluoroctl run` against it, two SIGINTs 3 ms
apart once the scout is on disk: every device confirms its safe state, the record is
closed, and the CLI prints what was confirmed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from ..e2e.conftest import LINKS_ROOM, ROOT, start_sim_serve, stop_sim_serve


def test_two_sigints_3_ms_apart_still_make_every_device_safe(tmp_path):
    serve = start_sim_serve(tmp_path)
    out = tmp_path / "exam"
    try:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "scheduler.cli",
                "run",
                "configs/protocols/ivu-accelerated.yaml",
                "--room",
                str(LINKS_ROOM),
                "--endpoints",
                str(serve.endpoints),
                "--out",
                str(out),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        journal = out / "events.jsonl"
        deadline = time.monotonic() + 90
        while not (journal.exists() and '"kind":"capture"' in journal.read_text()):
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "no image in 90 s"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGINT)
        time.sleep(0.003)
        os.kill(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        stop_sim_serve(serve)
    assert proc.returncode == 130, err[-3000:]
    events = [json.loads(line) for line in journal.read_text().splitlines()]
    abort = next(e for e in events if e["kind"] == "abort")
    assert abort["data"]["confirmed"] == {"injector": "safe", "carm": "safe", "table": "safe"}
    assert events[-1]["kind"] == "exam_finished"
    assert "safe state confirmed by: injector, carm, table" in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["state"] == "aborted" and summary["interrupted"] is True
    assert (out / "001-scout.dcm").exists()
