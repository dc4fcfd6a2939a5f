"""Spectra and attenuation tables are kept on disk between processes, read back exactly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hardware_sim.physics import _diskcache

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys
from hardware_sim.physics.xray import binned_spectrum, mu_per_mm
e, n = binned_spectrum(81.3, 2.5)
mu = mu_per_mm("water", e)
print(json.dumps({
    "e": e.tolist(), "n": n.tolist(), "mu": mu.tolist(),
    "imported": sorted(m for m in ("xraydb", "spekpy") if m in sys.modules),
}))
"""


def probe(cache: Path) -> dict[str, object]:
    env = {**os.environ, "FLUOROCTL_CACHE_DIR": str(cache)}
    run = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    out: dict[str, object] = json.loads(run.stdout)
    return out


def test_a_second_process_reads_the_tables_without_the_libraries(tmp_path: Path) -> None:
    cold = probe(tmp_path / "cache")
    warm = probe(tmp_path / "cache")
    assert cold["imported"] == ["spekpy", "xraydb"]
    assert warm["imported"] == []
    # bit for bit: JSON floats round-trip exactly
    assert (warm["e"], warm["n"], warm["mu"]) == (cold["e"], cold["n"], cold["mu"])
    assert len(list((tmp_path / "cache" / _diskcache.LAYOUT / "spekpy").iterdir())) == 1


def test_a_damaged_entry_is_computed_again_and_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLUOROCTL_CACHE_DIR", str(tmp_path))
    calls: list[int] = []

    @_diskcache.disk_cached("probe", "numpy")
    def table(n: int) -> tuple[np.ndarray, np.ndarray]:
        calls.append(n)
        return np.arange(n, dtype=float), np.arange(n, dtype=float) ** 2

    first = table(5)
    (entry,) = (tmp_path / _diskcache.LAYOUT / "probe").iterdir()
    entry.write_bytes(entry.read_bytes()[:40])  # torn
    again = table(5)
    assert calls == [5, 5]
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    read = table(5)
    assert calls == [5, 5]  # the replaced entry is read
    assert all(np.array_equal(a, b) for a, b in zip(first, read, strict=True))
    assert not read[0].flags.writeable


def test_a_cache_that_cannot_be_written_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("FLUOROCTL_CACHE_DIR", str(blocker))
    calls: list[int] = []

    @_diskcache.disk_cached("probe", "numpy")
    def table(n: int) -> np.ndarray:
        calls.append(n)
        return np.ones(n)

    assert np.array_equal(table(3), np.ones(3)) and np.array_equal(table(3), np.ones(3))
    assert calls == [3, 3]
