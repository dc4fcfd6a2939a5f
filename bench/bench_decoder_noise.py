"""What a hostile or noisy line costs the decoders, per byte, against random noise.

Each pattern is 256 KiB fed in 4 KiB reads (a serial or TCP read) to a fresh ``FrameDecoder``
and a fresh ``FastDecoder``; the figure is nanoseconds per input byte, best of the rounds, and
the ratio against random noise measured in the same run (the cost any line pays for noise).
Patterns: random noise; a stream of SOF bytes; alternating SOF/EOF; SOF SOF EOF; SOF then
one data byte, repeated; long runs of ESC inside frames; a SOF followed by a maximal unfinished
frame, repeated; many tiny junk frames (10 bytes between the markers, bad CRC); many tiny
valid frames (ACKs); and typical valid traffic (requests, replies, events, heartbeats).
The decoders' output (frames and error reports) is consumed the way a driver does: one step
per item, so a decoder that reports one error per byte pays for it here too.

Run: ``python bench/bench_decoder_noise.py [--rounds R] [--kib K]``.  The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from drivers.wire import (  # noqa: E402
    MAX_PAYLOAD,
    DecodeError,
    FastDecoder,
    FrameDecoder,
    MsgType,
    Status,
    ack,
    encode_frame,
    event,
    heartbeat,
    reply,
    request,
)

READ = 4096
SOF, EOF, ESC = b"\x7e", b"\x7f", b"\x7d"


def _fill(unit: bytes, size: int) -> bytes:
    return (unit * (size // len(unit) + 1))[:size]


def _valid_traffic(size: int) -> bytes:
    frames = [
        request(7, 2, "injector.arm", volume_ml=50, flow_ml_s=4.0, pressure_limit_kpa=2000),
        reply(7, 2, Status.OK, t_s=12.345, state="armed"),
        event(3, 2, "injector.status", volume_ml=12.5, flow_ml_s=4.0, pressure_kpa=830),
        heartbeat(9, 2),
    ]
    return _fill(b"".join(encode_frame(f) for f in frames), size)


def patterns(size: int) -> dict[str, bytes]:
    rng = random.Random(12)
    junk = SOF + bytes(rng.choice(range(0x20, 0x7D)) for _ in range(10)) + EOF
    unfinished = SOF + _fill(b"\x55", 2 * (10 + MAX_PAYLOAD) + 100)
    return {
        "random": rng.randbytes(size),
        "sof_stream": _fill(SOF, size),
        "sof_eof": _fill(SOF + EOF, size),
        "sof_sof_eof": _fill(SOF + SOF + EOF, size),
        "sof_byte": _fill(SOF + b"\x01", size),
        "esc_runs": _fill(SOF + ESC * 1000 + EOF, size),
        "unfinished_max": _fill(unfinished, size),
        "tiny_junk": _fill(junk, size),
        "tiny_valid": _fill(encode_frame(ack(1, 2, MsgType.EVENT)), size),
        "valid": _valid_traffic(size),
    }


def _consume(items: list[object], counts: list[int]) -> None:
    # A driver's per-item work, at its cheapest: a type check and a counter.
    for item in items:
        counts[isinstance(item, DecodeError)] += 1


def time_feed(make: Callable[[], FrameDecoder | FastDecoder], data: bytes, rounds: int) -> float:
    """Best ns per byte over ``rounds`` runs of a fresh decoder over ``data`` in reads."""
    reads = [data[i : i + READ] for i in range(0, len(data), READ)]
    best = float("inf")
    for _ in range(rounds):
        decoder = make()
        counts = [0, 0]
        t0 = time.perf_counter()
        for chunk in reads:
            _consume(decoder.feed(chunk), counts)  # type: ignore[arg-type]
        best = min(best, time.perf_counter() - t0)
    return best * 1e9 / len(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--kib", type=int, default=256)
    args = parser.parse_args()
    pats = patterns(args.kib * 1024)
    results: dict[str, float] = {}
    for label, make in (("frame", FrameDecoder), ("fast", FastDecoder)):
        base = time_feed(make, pats["random"], args.rounds)
        print(f"\n{label} decoder ({READ}-byte reads)")
        print(f"{'pattern':<16}{'ns/byte':>10}{'× noise':>10}")
        for name, data in pats.items():
            ns = base if name == "random" else time_feed(make, data, args.rounds)
            results[f"{label}_{name}_ns"] = round(ns, 2)
            results[f"{label}_{name}_ratio"] = round(ns / base, 2)
            print(f"{name:<16}{ns:>10.2f}{ns / base:>10.2f}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
