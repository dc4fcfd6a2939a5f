"""``fluoroctl sim render`` of every scenario: the contact sheet is kept as a test artifact.

The sheets stay after the run in build/test-artifacts/test_scenario_render/<test>/ (or under
$FLUOROCTL_TEST_ARTIFACTS; the ``artifacts`` fixture of tests/conftest.py).  Small panels (96²)
and four films plus the voiding and post-void films keep it quick.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from hardware_sim.render import SHEET_COLUMNS, SHEET_TILE_PX, render_scenario

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((ROOT / "configs" / "patients").glob("*.yaml"))
TIMES_S = (0, 60, 300, 900)


@pytest.mark.parametrize("scenario_path", SCENARIOS, ids=lambda p: p.stem)
def test_render_writes_the_scenarios_contact_sheet(scenario_path: Path, artifacts: Path) -> None:
    out = artifacts
    paths = render_scenario(scenario_path, out, size_px=96, tomo_time_s=None, times_s=TIMES_S)
    names = [p.name for p in paths]
    films = [n for n in names if n[:2].isdigit()]
    assert films[-2:] == [
        f"{len(TIMES_S):02d}-voiding.png",
        f"{len(TIMES_S) + 1:02d}-post-void.png",
    ]
    sheet = cv2.imread(str(out / "contact-sheet.png"), cv2.IMREAD_GRAYSCALE)
    assert sheet is not None
    rows = -(-len(films) // SHEET_COLUMNS)
    assert sheet.shape == (rows * SHEET_TILE_PX, SHEET_COLUMNS * SHEET_TILE_PX)
    # every tile holds a film (a blank tile would be all zero)
    for i in range(len(films)):
        r, c = divmod(i, SHEET_COLUMNS)
        tile = sheet[
            r * SHEET_TILE_PX : (r + 1) * SHEET_TILE_PX, c * SHEET_TILE_PX : (c + 1) * SHEET_TILE_PX
        ]
        assert float(tile.std()) > 5.0
