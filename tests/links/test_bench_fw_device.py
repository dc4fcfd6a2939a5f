"""``bench/fw_device.c``, the round-trip benchmark's firmware-speed device, is a correct peer of
wire protocol version 2: its SHA-256/HMAC agree with the standards and with Python, it opens a
session only for a host proving the room key, answers only frames sealed in that session (a
replayed or tampered frame, or a plain request, gets nothing), seals what it sends, and the
driver stack runs against it; so the benchmark's headline measures the real protocol.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import select
import subprocess
import sys
import time
import tty
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from drivers.clock import Clock
from drivers.links import open_link
from drivers.wire import (
    FastDecoder,
    Frame,
    Heartbeat,
    MsgType,
    Reply,
    Scalar,
    Status,
    WireClient,
    encode_raw,
    encode_request,
)
from drivers.wire.keys import RoomKey
from drivers.wire.session import HandshakeError, HostHandshake, Role, Session, Verdict

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import bench_roundtrip  # noqa: E402
from bench_roundtrip import build_firmware, no_mac  # noqa: E402

from tests.keys import TEST_KEY  # noqa: E402

DEV = 7
OTHER_KEY = RoomKey(bytes(range(1, 33)))


@pytest.fixture(scope="module")
def firmware(tmp_path_factory: pytest.TempPathFactory) -> str:
    exe, why = build_firmware(str(tmp_path_factory.mktemp("fw")))
    assert exe is not None, why  # .ci/run installs a C compiler
    return exe


def _serve(exe: str, *extra: str) -> Iterator[tuple[int, str]]:
    master, slave = os.openpty()
    tty.setraw(slave)
    argv = [exe, str(master), str(DEV), TEST_KEY.secret.hex(), *extra]
    proc = subprocess.Popen(argv, pass_fds=(master,))
    os.close(master)
    try:
        yield slave, os.ttyname(slave)
    finally:
        proc.terminate()
        proc.wait(5)
        os.close(slave)


@pytest.fixture
def fw_pty(firmware: str) -> Iterator[tuple[int, str]]:
    """(slave fd, slave path) with the compiled device serving the master."""
    yield from _serve(firmware)


@pytest.fixture
def nomac_pty(firmware: str) -> Iterator[tuple[int, str]]:
    yield from _serve(firmware, "nomac")


class Host:
    """A blocking host on the slave fd, written with the codec and the session module alone."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.decoder = FastDecoder()
        self.frames: list[Frame] = []
        self.session: Session | None = None
        self.seq = 100
        os.set_blocking(fd, False)

    def send(self, data: bytes) -> bytes:
        os.write(self.fd, data)
        return data

    def request(self, command: str, *, sealed: bool = True, **fields: Scalar) -> tuple[int, bytes]:
        self.seq += 1
        seal = self.session.seal if sealed and self.session is not None else None
        return self.seq, encode_request(self.seq, DEV, command, fields, seal)

    def read_for(self, seconds: float) -> list[Frame]:
        return self.read_until(lambda f: False, seconds, must=False)

    def read_until(
        self, pred: Callable[[Frame], bool], within: float = 2.0, *, must: bool = True
    ) -> list[Frame]:
        """Frames read until one satisfies ``pred`` (or ``within`` seconds pass)."""
        got: list[Frame] = []
        end = time.monotonic() + within
        while (left := end - time.monotonic()) > 0:
            if not select.select([self.fd], [], [], left)[0]:
                continue
            new = [f for f in self.decoder.feed(os.read(self.fd, 65536)) if isinstance(f, Frame)]
            got += new
            self.frames += new
            if any(pred(f) for f in new):
                return got
        assert not must, "no such frame arrived"
        return got

    def reply_to(self, seq: int) -> Frame:
        frames = self.read_until(lambda f: f.seq == seq and isinstance(f.message, Reply))
        return next(f for f in frames if f.seq == seq and isinstance(f.message, Reply))

    def call(self, command: str, *, sealed: bool = True, **fields: Scalar) -> Frame:
        seq, data = self.request(command, sealed=sealed, **fields)
        self.send(data)
        return self.reply_to(seq)

    def handshake(self, key: RoomKey = TEST_KEY) -> tuple[Frame, Frame]:
        """``link.hello`` and ``link.auth``; the session is kept. The device's proof is checked
        by ``HostHandshake.answer`` (HandshakeError if it is not the room key's)."""
        hs = HostHandshake(key, DEV, Role.CONTROL, "bench-test-host")
        hello = self.call("link.hello", sealed=False, **hs.hello())
        assert isinstance(hello.message, Reply) and hello.message.status is Status.OK, hello
        fields, self.session = hs.answer(hello.message.fields)
        return hello, self.call("link.auth", sealed=False, **fields)

    def marker(self) -> list[Frame]:
        """A valid sealed request and every frame up to its reply. The device answers in
        order, so any reply to a request sent before it is in this list (or seen earlier)."""
        seq, data = self.request("status")
        self.send(data)
        return self.read_until(lambda f: f.seq == seq and isinstance(f.message, Reply))

    def replies(self) -> list[int]:
        return [f.seq for f in self.frames if isinstance(f.message, Reply)]


def _digest(exe: str, *args: str) -> str:
    done = subprocess.run([exe, *args], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_sha256_and_hmac_match_the_standards_and_python(firmware: str) -> None:
    # FIPS 180-4 examples (one and two blocks), RFC 4231 test cases 2 and 6 (key > block).
    assert _digest(firmware, "--sha256", b"abc".hex()) == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    two_blocks = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
    assert _digest(firmware, "--sha256", two_blocks.hex()) == (
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
    )
    tc2 = _digest(firmware, "--hmac", b"Jefe".hex(), b"what do ya want for nothing?".hex())
    assert tc2 == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    tc6 = _digest(
        firmware,
        "--hmac",
        "aa" * 131,
        b"Test Using Larger Than Block-Size Key - Hash Key First".hex(),
    )
    assert tc6 == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
    # docs/wire-protocol.md §7.5: the tag of the example request (K_hd = 00..1f, sid 1, ctr 1).
    signed = (
        bytes.fromhex("02010202007e0014")
        + b"\x03arm"
        + b'{"volume_ml":50}'
        + bytes([0, 0, 0, 1, 0, 0, 0, 1])
    )
    tag = _digest(firmware, "--hmac", bytes(range(32)).hex(), signed.hex())[:32]
    assert tag == "9c36ab5a4350e9a76543f1fda2fe783b"
    # Padding edges (55/56/64 bytes fill one block exactly or spill) and key sizes, vs Python.
    for n in (0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 1000):
        msg = bytes((7 * i + n) & 0xFF for i in range(n))
        for key in (b"", b"k" * 32, b"k" * 64, b"k" * 65):
            want = hmac.digest(key, msg, "sha256").hex()
            assert _digest(firmware, "--hmac", key.hex(), msg.hex()) == want, (n, len(key))


def test_handshake_proofs_and_session_keys_match_python(fw_pty: tuple[int, str]) -> None:
    host = Host(fw_pty[0])
    hello, auth = host.handshake()  # raises if the device's proof is not Python's
    assert isinstance(hello.message, Reply) and hello.auth is None  # the hello reply is plain
    assert hello.message.fields["state"] == "READY"
    assert type(hello.message.fields["uptime_ms"]) is int
    session = host.session
    assert session is not None
    # The link.auth reply is sealed with K_dh as Python derives it.
    assert auth.auth is not None and session.check(auth.auth) is Verdict.OK
    assert isinstance(auth.message, Reply) and auth.message.status is Status.OK
    assert auth.message.fields["role"] == "control"
    assert auth.message.fields["session"] == session.sid == auth.auth.sid
    # A request sealed with K_hd is answered, sealed again.
    for _ in range(3):
        reply = host.call("status")
        assert reply.auth is not None and session.check(reply.auth) is Verdict.OK
        assert isinstance(reply.message, Reply) and reply.message.status is Status.OK


def test_a_host_without_the_room_key_gets_no_session(fw_pty: tuple[int, str]) -> None:
    host = Host(fw_pty[0])
    with pytest.raises(HandshakeError, match="could not prove"):
        host.handshake(OTHER_KEY)  # the device's proof does not verify with another key
    # The other way round: a host proof that is not the room key's is refused.
    hs = HostHandshake(TEST_KEY, DEV, Role.CONTROL, "h")
    hello = host.call("link.hello", sealed=False, **hs.hello())
    assert isinstance(hello.message, Reply)
    fields, _ = hs.answer(hello.message.fields)
    proof = str(fields["proof"])
    forged = {**fields, "proof": f"{int(proof[0], 16) ^ 1:x}{proof[1:]}"}
    refused = host.call("link.auth", sealed=False, **forged)
    assert isinstance(refused.message, Reply) and refused.auth is None
    assert refused.message.status is Status.BAD_ARG
    assert refused.message.fields["fault"] == "auth"
    # The offer is spent: the right proof after a wrong one opens nothing either.
    again = host.call("link.auth", sealed=False, **fields)
    assert isinstance(again.message, Reply) and again.message.status is Status.BAD_ARG


def test_unauthenticated_requests_get_no_reply(fw_pty: tuple[int, str]) -> None:
    host = Host(fw_pty[0])
    before, data = host.request("status", sealed=False)
    host.send(data)
    assert host.read_for(0.45) == []  # no reply, and no heartbeats without a session
    host.handshake()
    plain, data = host.request("status", sealed=False)
    host.send(data)
    host.marker()
    assert before not in host.replies() and plain not in host.replies()


def test_replayed_and_tampered_frames_are_dropped(fw_pty: tuple[int, str]) -> None:
    host = Host(fw_pty[0])
    host.handshake()
    session = host.session
    assert session is not None
    after = len(host.frames)
    first, data = host.request("status")
    host.send(data)
    host.reply_to(first)
    host.send(data)  # the same bytes again: a replay

    def flipped(raw: bytes) -> bytes:
        trailer = bytearray(session.seal(raw))
        trailer[8 + 5] ^= 0x10  # one bit of the tag; the CRC is computed over the flipped one
        return bytes(trailer)

    host.seq += 1
    bad_tag = host.seq
    host.send(encode_raw(MsgType.REQUEST, bad_tag, DEV, b"\x06status{}", seal=flipped))

    def other_payload(raw: bytes) -> bytes:  # the tag of one payload on another
        return session.seal(raw[:8] + b"\x06status{}")

    host.seq += 1
    moved = host.seq
    host.send(encode_raw(MsgType.REQUEST, moved, DEV, b"\x04stop{}", seal=other_payload))
    # Sealed in one order, sent in the other: both are new to the window; then both again.
    (early, a), (late, b) = host.request("status"), host.request("status")
    host.send(b + a + a + b)
    host.marker()
    replies = host.replies()
    assert replies.count(first) == 1 and bad_tag not in replies and moved not in replies
    assert replies.count(early) == 1 and replies.count(late) == 1
    # Everything it sent verifies with the session, and the session still works.
    sent = host.frames[after:]
    assert all(f.auth is not None and session.check(f.auth) is Verdict.OK for f in sent)
    assert isinstance(host.call("status").message, Reply)


def test_a_new_session_replaces_the_old_one(fw_pty: tuple[int, str]) -> None:
    host = Host(fw_pty[0])
    host.handshake()
    old = host.session
    assert old is not None
    host.handshake()
    stale = host.seq = host.seq + 1
    host.send(encode_request(stale, DEV, "status", {}, old.seal))
    host.marker()
    assert stale not in host.replies()


def test_answers_valid_requests_and_ignores_damaged_ones(fw_pty: tuple[int, str]) -> None:
    host = Host(fw_pty[0])
    host.handshake()
    session = host.session
    assert session is not None
    # seq and args stuffed; sealed first and sent last: its counter is below the others'
    good = encode_request(0x7E7D, DEV, "status", {"pad": "~}\x7f"}, session.seal)
    damaged = bytearray(encode_request(41, DEV, "status", {}, session.seal))
    damaged[5] ^= 0x01
    other_device = encode_request(42, DEV + 1, "status", {}, session.seal)
    host.send(bytes(damaged) + other_device + good)
    frames = host.read_for(0.5)
    assert all(f.auth is not None and session.check(f.auth) is Verdict.OK for f in frames)
    replies = [f for f in frames if isinstance(f.message, Reply)]
    assert [(f.seq, f.device, f.message.status) for f in replies] == [(0x7E7D, DEV, Status.OK)]
    t_s = replies[0].message.fields["t_s"]
    assert isinstance(t_s, float) and abs(t_s - time.monotonic()) < 5.0  # CLOCK_MONOTONIC
    beats = [f for f in frames if isinstance(f.message, Heartbeat)]
    assert 2 <= len(beats) <= 4  # every 200 ms
    assert [f.message.uptime_ms for f in beats] == sorted(f.message.uptime_ms for f in beats)


def test_nomac_mode_sends_zero_tags_and_takes_any(nomac_pty: tuple[int, str]) -> None:
    host = Host(nomac_pty[0])
    host.handshake()  # the handshake's proofs are real in this mode too
    session = host.session
    assert session is not None

    def zero_tag(raw: bytes) -> bytes:
        return session.seal(raw)[:8] + bytes(16)

    host.seq += 1
    seq = host.seq
    host.send(encode_raw(MsgType.REQUEST, seq, DEV, b"\x06status{}", seal=zero_tag))
    reply = host.reply_to(seq)
    assert reply.auth is not None and reply.auth.tag == bytes(16)
    assert reply.auth.sid == session.sid


@pytest.mark.asyncio
async def test_the_driver_stack_runs_against_it(fw_pty: tuple[int, str]) -> None:
    _, path = fw_pty
    client = WireClient(
        lambda: open_link(f"serial://{path}?reply_wait_ms=2"),
        device_id=DEV,
        name="fw",
        clock=Clock.for_running_loop(),
        key=TEST_KEY,
    )
    await client.connect(timeout_s=2.0)
    try:
        stamps = [(await client.call("status"))["t_s"] for _ in range(200)]
        assert all(isinstance(t, float) for t in stamps)
        assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
        # The device clock is CLOCK_MONOTONIC, the host's too: the estimated offset is the
        # round trip's uncertainty at most, well under a millisecond on a pty.
        assert client.clock_uncertainty_s < 1e-3
        assert abs(client.to_host_time(time.monotonic()) - time.monotonic()) < 1e-3
        assert client.stats.timeouts == 0 and client.stats.retries == 0
        await asyncio.sleep(0.5)
        assert client.is_up  # its sealed heartbeats keep the link up
        assert client.security.bad_tags == 0 and client.security.replays == 0
    finally:
        await client.close()


def test_no_mac_drops_the_hmac_only_for_its_host_and_only_inside() -> None:
    def session(host: str) -> Session:
        return Session(1, Role.CONTROL, host, bytes(32), bytes(32))

    raw = bytes(8)
    with no_mac("baseline"):
        zero, real = session("baseline").seal(raw), session("other").seal(raw)
        forged = FastDecoder().feed(encode_request(1, DEV, "status", {}, session("x").seal))
    assert zero[:8] == real[:8] == bytes([0, 0, 0, 1, 0, 0, 0, 1])
    assert zero[8:] == bytes(16) and real[8:] != bytes(16)
    assert session("baseline").seal(raw) == real  # restored on exit
    (frame,) = forged
    assert isinstance(frame, Frame) and frame.auth is not None
    # A tag made under another key passes the baseline's check, and only there.
    stranger = Session(1, Role.CONTROL, "baseline", bytes(32), bytes(range(32)))
    with no_mac("baseline"):
        assert stranger.check(frame.auth) is Verdict.OK
    stranger = Session(1, Role.CONTROL, "baseline", bytes(32), bytes(range(32)))
    assert stranger.check(frame.auth) is Verdict.BAD_TAG


def test_the_benchmark_mac_pair_runs_both_ways(
    firmware: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the bench's MAC-cost rows run: a MAC and a nomac firmware, a client for each, live
    # at once. mac_pair itself asserts no timeouts, retries or dropped frames on either side.
    monkeypatch.setattr(bench_roundtrip, "FIRMWARE", firmware)
    both = bench_roundtrip.mac_pair(2 * bench_roundtrip.MAC_BLOCK, bench_roundtrip.REPLY_WAIT)
    assert set(both) == {"mac", "nomac"}
    assert all(r["per_s"] > 0 for r in both.values())
    assert Session(1, Role.CONTROL, bench_roundtrip.NOMAC_HOST, bytes(32), bytes(32)).seal(
        bytes(8)
    )[8:] != bytes(16)  # the patch is gone again
