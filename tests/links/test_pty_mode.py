"""The ptys `sim serve` publishes as serial ports are private to the simulator's user."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from hardware_sim.links import PtyServer

pytestmark = pytest.mark.links


def _mode(path: str | Path) -> int:
    return stat.S_IMODE(os.stat(os.path.realpath(path)).st_mode)


@pytest.mark.asyncio
async def test_pty_device_is_0600_even_where_devpts_shares_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real_openpty = os.openpty

    def desktop_openpty() -> tuple[int, int]:
        # A desktop's devpts (mode=620,gid=tty) lets the tty group write to the port; some
        # containers mount it 600 already. Make every pty start as on the desktop.
        master, slave = real_openpty()
        os.fchmod(slave, 0o620)
        return master, slave

    monkeypatch.setattr(os, "openpty", desktop_openpty)
    server = PtyServer(tmp_path / "carm.tty")
    await server.open()
    try:
        assert _mode(server.path) == 0o600
        server.restart()  # the "pty closed" fault makes a new pair: private too
        assert _mode(server.path) == 0o600
    finally:
        await server.close()
