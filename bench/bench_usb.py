"""1024² uint16 frames per second, device → host, over the simulated USB bulk link.

The device runs in its own process (as the simulator does), the host in this one: two cores.
End to end, per frame: the device encodes the 2 MiB image as wire BULK chunks
(``drivers.wire.bulk_chunks`` + ``encode_frame``, 16 KiB chunks) and writes them to the
``UsbGadget``; the host reads through the real pyusb API (``UsbLink``, sim backend over TCP)
and decodes with ``FrameDecoder`` + ``BulkAssembler`` (image CRC-32 checked). Reference measured
in the same run: the same bytes, encoded and decoded the same way, through a plain TCP socket
(``sendall`` → ``recv_into``). A second pair of rows sends one pre-encoded frame repeatedly
and the host only counts bytes: the transports' ceilings without the codec.

Run: ``python bench/bench_usb.py [--frames N] [--rounds R]``.  The last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import socket
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from drivers.links import UsbLink  # noqa: E402
from drivers.wire import (  # noqa: E402
    BulkAssembler,
    BulkComplete,
    DecodeError,
    FrameDecoder,
    bulk_chunks,
    encode_frame,
)
from hardware_sim.links import UsbGadget  # noqa: E402

SIDE = 1024
DEVICE_ID = 4
GOAL_FPS = 20.0
WARMUP = 5
RECV_SIZE = 1 << 20


def make_image(seed: int = 1) -> bytes:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 4096, (SIDE, SIDE), dtype=np.uint16).tobytes()


def encode(transfer_id: int, image: bytes) -> bytes:
    chunks = bulk_chunks(transfer_id, image, device=DEVICE_ID)
    return b"".join(encode_frame(f) for f in chunks)


def frames_for(total: int, encode_each: bool) -> Iterator[bytes]:
    """The device's output: a fresh encoding per frame, or one encoding sent repeatedly."""
    image = bytearray(make_image())
    fixed = encode(0, bytes(image))
    for i in range(total):
        if encode_each:
            image[:4] = i.to_bytes(4, "big")  # every frame differs (and its CRC with it)
            yield encode(i, bytes(image))
        else:
            yield fixed


# --- device process -------------------------------------------------------------------------


def usb_device(conn: Any, total: int, encode_each: bool) -> None:
    async def main() -> None:
        gadget = UsbGadget(0x1209, 0xF10C)
        await gadget.open()
        conn.send(gadget.host_url)
        await gadget.wait_host(30.0)  # stream only to a polling host: nothing dropped
        for payload in frames_for(total, encode_each):
            await gadget.write(payload)
        await asyncio.to_thread(conn.recv)  # until the host has it all (the loop serves on)
        await gadget.close()

    asyncio.run(main())


def tcp_device(conn: Any, total: int, encode_each: bool) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        conn.send(server.getsockname()[1])
        sock, _ = server.accept()
        with sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for payload in frames_for(total, encode_each):
                sock.sendall(payload)
            conn.recv()


# --- host side ------------------------------------------------------------------------------


class Counter:
    """Decodes (or just counts) the stream; times each block of ``frames`` after the warm-up."""

    def __init__(self, frames: int, rounds: int, decode: bool, frame_bytes: int) -> None:
        self.frames, self.rounds, self.decode = frames, rounds, decode
        self.frame_bytes = frame_bytes
        self.decoder = FrameDecoder()
        self.assembler = BulkAssembler(max_transfers=8)
        self.done = 0
        self.bytes = 0
        self.marks: list[float] = []
        self.total = WARMUP + frames * rounds

    @property
    def finished(self) -> bool:
        return self.done >= self.total

    def feed(self, data: bytes | memoryview) -> None:
        if not self.decode:
            self.bytes += len(data)
            done = self.bytes // self.frame_bytes
        else:
            done = self.done
            for item in self.decoder.feed(data):
                if isinstance(item, DecodeError):
                    raise RuntimeError(f"decode error: {item}")
                result = self.assembler.add(item, 0.0)
                if isinstance(result, BulkComplete):
                    assert len(result.data) == SIDE * SIDE * 2
                    done += 1
                elif result is not None:
                    raise RuntimeError(f"bulk error: {result}")
        while self.done < done:
            self.done += 1
            if self.done == WARMUP or (
                self.done > WARMUP and (self.done - WARMUP) % self.frames == 0
            ):
                self.marks.append(time.perf_counter())

    def fps(self) -> list[float]:
        return [self.frames / (b - a) for a, b in zip(self.marks, self.marks[1:], strict=False)]


def run_usb(frames: int, rounds: int, decode: bool, frame_bytes: int) -> list[float]:
    ctx = mp.get_context("spawn")
    here, there = ctx.Pipe()
    counter = Counter(frames, rounds, decode, frame_bytes)
    proc = ctx.Process(target=usb_device, args=(there, counter.total, decode))
    proc.start()
    url = here.recv()

    async def host() -> None:
        async with UsbLink(url) as link:
            while not counter.finished:
                counter.feed(await link.read())

    asyncio.run(host())
    here.send("done")
    proc.join(30)
    return counter.fps()


def run_tcp(frames: int, rounds: int, decode: bool, frame_bytes: int) -> list[float]:
    ctx = mp.get_context("spawn")
    here, there = ctx.Pipe()
    counter = Counter(frames, rounds, decode, frame_bytes)
    proc = ctx.Process(target=tcp_device, args=(there, counter.total, decode))
    proc.start()
    port = here.recv()
    buf = bytearray(RECV_SIZE)
    view = memoryview(buf)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        while not counter.finished:
            n = sock.recv_into(buf)
            if n == 0:
                raise RuntimeError("device closed early")
            # The decoder copies what it keeps; the raw count needs no copy at all.
            counter.feed(view[:n] if not decode else bytes(view[:n]))
        here.send("done")
    proc.join(30)
    return counter.fps()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=40, help="frames per timed round")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds (median reported)")
    args = ap.parse_args()

    frame_bytes = len(encode(0, make_image()))
    results: dict[str, list[float]] = {}
    for name, fn, decode in (
        ("usb e2e", run_usb, True),
        ("tcp e2e", run_tcp, True),
        ("usb raw", run_usb, False),
        ("tcp raw", run_tcp, False),
    ):
        results[name] = fn(args.frames, args.rounds, decode, frame_bytes)
    med = {k: statistics.median(v) for k, v in results.items()}
    mib = frame_bytes / 2**20

    print(
        f"{SIDE}² uint16 frames device → host ({mib:.2f} MiB encoded per frame, "
        f"{args.frames} frames × {args.rounds} rounds, median), device in its own process"
    )
    head = f"{'path':>8} | {'fps':>7} {'MiB/s':>7} | rounds (fps)"
    print(head)
    print("-" * len(head))
    for name, fps in med.items():
        rounds = ", ".join(f"{x:.1f}" for x in results[name])
        print(f"{name:>8} | {fps:7.1f} {fps * mib:7.0f} | {rounds}")
    e2e_ratio = med["usb e2e"] / med["tcp e2e"]
    raw_ratio = med["usb raw"] / med["tcp raw"]
    print(
        f"usb/tcp: end to end {e2e_ratio:.2f}, raw {raw_ratio:.2f}; "
        f"goal {GOAL_FPS:.0f} fps end to end: {'met' if med['usb e2e'] >= GOAL_FPS else 'MISSED'}"
    )
    summary = {
        "benchmark": "usb_link",
        "frames": args.frames,
        "rounds": args.rounds,
        "frame_mib": round(mib, 3),
        "goal_fps": GOAL_FPS,
        "usb_e2e_fps": round(med["usb e2e"], 1),
        "tcp_e2e_fps": round(med["tcp e2e"], 1),
        "usb_raw_fps": round(med["usb raw"], 1),
        "tcp_raw_fps": round(med["tcp raw"], 1),
        "usb_over_tcp_e2e": round(e2e_ratio, 3),
        "usb_over_tcp_raw": round(raw_ratio, 3),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
