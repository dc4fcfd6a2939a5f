"""``fluoroctl calibrate ROOM``: dark and flat frames from the room's detector, made into the
calibration the host image chain corrects every frame with (docs/image-chain.md)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from pathlib import Path

from drivers import Clock, DeviceError, new_event_loop
from drivers.carm import PANEL_CORRECTIONS

from .exit_codes import EXIT_FAILED
from .imaging import store
from .imaging.acquire import DARK_FRAMES, FLAT_FRAMES, acquire_calibration
from .paths import room_path
from .room import Room, load_room


def add_calibrate_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cal = sub.add_parser(
        "calibrate",
        help="take dark and flat frames from the room's detector (nothing in the beam) and "
        "store the panel's calibration with the room",
    )
    cal.add_argument("room", type=room_path, help="room file (or a shipped room's name)")
    cal.add_argument(
        "--frames",
        type=int,
        default=DARK_FRAMES,
        help=f"dark and flat frames averaged per panel mode (default {DARK_FRAMES})",
    )
    cal.add_argument(
        "--out",
        type=Path,
        default=None,
        help="calibration folder (default: the room's calibration option, else "
        "calibration/<station name>)",
    )
    cal.set_defaults(func=_cmd_calibrate)


def _cmd_calibrate(args: argparse.Namespace) -> int:
    room_file: Path = args.room
    room = load_room(room_file)
    if not 1 <= args.frames <= 256:
        print(f"error: --frames must be 1..256, got {args.frames}", file=sys.stderr)
        return 2
    folder = args.out or store.calibration_dir(room)
    loop = new_event_loop("virtual" if room.clock == "virtual" else "real")
    try:
        return loop.run_until_complete(_calibrate(room, room_file, folder, args.frames))
    finally:
        loop.close()


async def _calibrate(room: Room, room_file: Path, folder: Path, frames: int) -> int:
    from .compose import config_base_dir, open_devices, room_file_options

    clock = Clock.for_running_loop()
    devices = await open_devices(
        room, clock, config_base_dir(room_file), room_file_options(room, room_file)
    )
    try:
        carm = devices.carm
        try:
            calibration = await acquire_calibration(
                carm, dt.datetime.now(dt.UTC), dark_frames=frames, flat_frames=frames
            )
        except (DeviceError, ValueError) as exc:
            print(f"error: {room_file}: cannot calibrate: {exc}", file=sys.stderr)
            return EXIT_FAILED
        manifest = await asyncio.to_thread(store.save, calibration, folder)
    finally:
        await devices.aclose()
    on_board = sorted(carm.panel_corrections & PANEL_CORRECTIONS)
    for name, cal in calibration.modes.items():
        m = cal.mode
        print(
            f"{name}: {m.rows}x{m.cols} binning {m.binning}, {cal.dark_frames} dark + "
            f"{cal.flat_frames} flat frames, {int(cal.defects.sum())} defect pixels"
        )
    if on_board:
        print(f"note: the panel corrects {', '.join(on_board)} on board; the host skips that")
    print(f"calibration stored: {manifest} (valid {store.max_age_h(room):g} h)")
    return 0


__all__ = ["FLAT_FRAMES", "add_calibrate_parser"]
