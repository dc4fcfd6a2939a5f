"""The session layer's computation (drivers/wire/session.py) against docs/wire-protocol.md §7.

Expected values are computed here from the spec with ``hmac``/``hashlib`` directly, not taken
from the code under test.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.wire import (
    MAX_PAYLOAD,
    Flags,
    Frame,
    FrameDecoder,
    Reply,
    Request,
    Status,
    encode_frame,
    request,
)
from drivers.wire._fast import encode_reply, encode_request, parse_reply
from drivers.wire.codec import Auth
from drivers.wire.keys import KeyFileError, RoomKey, load_key_file, write_key_file
from drivers.wire.session import (
    WINDOW,
    DeviceHandshakes,
    HandshakeError,
    HostHandshake,
    ReplayWindow,
    Role,
    Session,
    Verdict,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "wire-protocol.md"
KEY = RoomKey(bytes(range(32)))


def _pair(key_host: RoomKey = KEY, key_device: RoomKey = KEY) -> tuple[Session, Session]:
    """A host and a device session made by the real handshake."""
    host = HostHandshake(key_host, 3, Role.CONTROL, "host-a")
    device = DeviceHandshakes(key_device, 3)
    offer = device.hello(host.hello(), set())
    auth, host_session = host.answer(offer)
    return host_session, device.auth(auth)


# --- §7.5: the documented bytes -----------------------------------------------------------


def _doc_sealed_example() -> bytes:
    block = DOC.read_text().split("On the wire (58 bytes):", 1)[1].split("```")[1]
    return bytes.fromhex(" ".join(re.findall(r"^((?:[0-9a-f]{2} ?)+)", block, re.M)))


def test_the_documented_sealed_frame_is_what_the_spec_computes() -> None:
    k_hd = bytes(range(32))
    payload = b"\x03arm" + b'{"volume_ml":50}'
    header = bytes([2, 1, int(Flags.AUTH), 2]) + struct.pack(">HH", 126, len(payload))
    tail = struct.pack(">II", 1, 1)
    tag = hmac.new(k_hd, header + payload + tail, hashlib.sha256).digest()[:16]
    raw = header + payload + tail + tag
    crc = 0xFFFF  # CRC-16/CCITT-FALSE, bitwise
    for b in raw:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    raw += crc.to_bytes(2, "big")
    stuffed = raw.replace(b"\x7d", b"\x7d\x5d").replace(b"\x7e", b"\x7d\x5e")
    stuffed = stuffed.replace(b"\x7f", b"\x7d\x5f")
    expected = b"\x7e" + stuffed + b"\x7f"
    assert _doc_sealed_example() == expected
    session = Session(1, Role.CONTROL, "h", k_out=k_hd, k_in=bytes(32))
    assert encode_frame(request(126, 2, "arm", volume_ml=50), session.seal) == expected


def test_handshake_keys_and_proofs_follow_the_spec() -> None:
    host = HostHandshake(KEY, 7, Role.OBSERVE, "console-1")
    device = DeviceHandshakes(KEY, 7)
    offer = device.hello(host.hello(), set())
    sid, nd = int(offer["session"]), bytes.fromhex(str(offer["nonce"]))
    t = b"|".join(
        (b"fluoroctl-wire-2", b"observe", b"console-1", struct.pack(">II", 7, sid), host.nonce, nd)
    )

    def h(label: bytes) -> bytes:
        return hmac.new(KEY.secret, label + t, hashlib.sha256).digest()

    assert offer["proof"] == h(b"device-proof|")[:16].hex()
    auth, hs = host.answer(offer)
    assert auth == {"session": sid, "proof": h(b"host-proof|")[:16].hex()}
    ds = device.auth(auth)
    assert (hs.k_out, hs.k_in) == (h(b"h2d|"), h(b"d2h|")) == (ds.k_in, ds.k_out)
    assert ds.role is Role.OBSERVE and ds.host == "console-1"


# --- handshake failures ---------------------------------------------------------------------


def test_a_device_with_another_key_is_not_believed() -> None:
    host = HostHandshake(KEY, 3, Role.CONTROL, "h")
    offer = DeviceHandshakes(RoomKey(os.urandom(32)), 3).hello(host.hello(), set())
    with pytest.raises(HandshakeError, match="could not prove"):
        host.answer(offer)


def test_a_host_with_another_key_is_refused_and_the_offer_is_spent() -> None:
    device = DeviceHandshakes(KEY, 3)
    host = HostHandshake(RoomKey(os.urandom(32)), 3, Role.CONTROL, "h")
    offer = device.hello(host.hello(), set())
    # The impostor cannot check the device's proof, but try its answer anyway.
    t_fields = {"session": offer["session"], "proof": "00" * 16}
    with pytest.raises(HandshakeError, match="proof"):
        device.auth(t_fields)
    honest = HostHandshake(KEY, 3, Role.CONTROL, "h")
    honest.nonce = host.nonce
    # Even the right proof for that offer is too late: a failed attempt spends it.
    with pytest.raises(HandshakeError, match=r"no link\.hello offer"):
        device.auth(honest.answer(offer)[0])


def test_a_recorded_link_auth_does_not_open_a_second_session() -> None:
    host = HostHandshake(KEY, 3, Role.CONTROL, "h")
    device = DeviceHandshakes(KEY, 3)
    auth, _ = host.answer(device.hello(host.hello(), set()))
    device.auth(auth)
    with pytest.raises(HandshakeError):
        device.auth(auth)  # replayed: the offer was used
    device.hello(host.hello(), set())  # a new offer has a new device nonce
    with pytest.raises(HandshakeError):
        device.auth(auth)


def test_a_proof_is_not_reflected_between_the_roles() -> None:
    host = HostHandshake(KEY, 3, Role.CONTROL, "h")
    device = DeviceHandshakes(KEY, 3)
    offer = device.hello(host.hello(), set())
    reflected = {"session": offer["session"], "proof": offer["proof"]}  # device's own proof
    with pytest.raises(HandshakeError):
        device.auth(reflected)


@pytest.mark.parametrize(
    "hello",
    [
        {"role": "admin", "host": "h", "nonce": "00" * 16},
        {"role": "control", "host": "", "nonce": "00" * 16},
        {"role": "control", "host": "h", "nonce": "00" * 15},
        {"role": "control", "host": "h", "nonce": "zz" * 16},
        {"role": "control", "host": "h"},
    ],
)
def test_malformed_hellos_are_refused_with_a_reason(hello: dict[str, object]) -> None:
    with pytest.raises(HandshakeError):
        DeviceHandshakes(KEY, 3).hello(hello, set())


# --- the trailer and the replay window ------------------------------------------------------


def test_sealed_frames_verify_once_and_only_unaltered() -> None:
    host, device = _pair()
    data = encode_request(9, 3, "start", {}, host.seal)
    (frame,) = FrameDecoder().feed(data)
    assert isinstance(frame, Frame) and frame.auth is not None
    assert frame.flags & Flags.AUTH
    assert device.check(frame.auth) is Verdict.OK
    assert device.check(frame.auth) is Verdict.REPLAY  # the same bytes again
    # Every bit of header, payload, sid, ctr and tag matters (an attacker recomputes the CRC,
    # so what stands is the tag).
    (good,) = FrameDecoder().feed(encode_request(10, 3, "start", {}, host.seal))
    assert isinstance(good, Frame) and good.auth is not None
    covered = good.auth.signed + good.auth.tag
    for i in range(len(covered) * 8):
        forged = bytearray(covered)
        forged[i // 8] ^= 1 << (i % 8)
        sid, ctr = struct.unpack_from(">II", forged, len(forged) - 24)
        auth = Auth(sid, ctr, bytes(forged[-16:]), bytes(forged[:-16]))
        assert device.check(auth) is not Verdict.OK, i
    assert device.check(good.auth) is Verdict.OK  # the genuine one still passes after all that


def test_replay_window_accepts_late_frames_once_and_drops_old_ones() -> None:
    w = ReplayWindow()
    for ctr in (1, 2, 5, 3):
        assert w.check(ctr) is Verdict.OK
        w.accept(ctr)
    assert w.check(3) is Verdict.REPLAY and w.check(4) is Verdict.OK
    assert w.check(0) is Verdict.STALE
    w.accept(5 + WINDOW)
    assert w.check(5) is Verdict.STALE  # fell out of the window
    assert w.check(6) is Verdict.OK  # inside it, never seen
    w.accept(10_000)
    assert w.check(10_000 - WINDOW + 1) is Verdict.OK and w.check(10_000) is Verdict.REPLAY


def test_another_sessions_frame_is_foreign_not_forged() -> None:
    _, device_a = _pair()
    host_b, _ = _pair()
    (frame,) = FrameDecoder().feed(encode_request(1, 3, "status", {}, host_b.seal))
    assert isinstance(frame, Frame)
    assert device_a.check(frame.auth) is Verdict.FOREIGN  # random 32-bit sids differ
    assert device_a.check(None) is Verdict.UNAUTHENTICATED


def test_the_fast_reply_path_gives_the_codec_auth() -> None:
    host, device = _pair()
    data = encode_reply(4, 3, Status.OK, {"t_s": 1.5}, device.seal)
    parsed = parse_reply(data)
    (ref,) = FrameDecoder().feed(data)
    assert parsed is not None and isinstance(ref, Frame)
    assert parsed[5] == ref.auth and parsed[5] is not None
    assert ref.message == Reply(Status.OK, {"t_s": 1.5})
    assert host.check(parsed[5]) is Verdict.OK


# --- fuzzing the authenticated format --------------------------------------------------------

_names = st.from_regex(r"[a-z][a-z._]{0,20}", fullmatch=True)
_fields = st.dictionaries(
    st.text(max_size=8), st.one_of(st.integers(-(2**63), 2**63 - 1), st.text(max_size=20))
)


@settings(max_examples=200, deadline=None)
@given(
    name=_names,
    fields=_fields,
    seq=st.integers(0, 0xFFFF),
    cuts=st.lists(st.integers(0, 400), max_size=6),
    noise=st.binary(max_size=64),
)
def test_sealed_frames_survive_noise_and_any_split(
    name: str, fields: dict[str, object], seq: int, cuts: list[int], noise: bytes
) -> None:
    host, device = _pair()
    data = noise + b"\x7f" + encode_frame(Frame(seq, 3, Request(name, fields)), host.seal)  # type: ignore[arg-type]
    points = sorted({min(c, len(data)) for c in cuts})
    decoder = FrameDecoder()
    out = []
    for a, b in zip([0, *points], [*points, len(data)], strict=True):
        out.extend(decoder.feed(data[a:b]))
    frames = [f for f in out if isinstance(f, Frame)]
    assert frames and frames[-1].message == Request(name, fields)  # type: ignore[arg-type]
    assert device.check(frames[-1].auth) is Verdict.OK


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=600), flip=st.integers(0, 10_000))
def test_arbitrary_auth_frames_never_raise_and_never_verify(data: bytes, flip: int) -> None:
    """Random bytes with the AUTH flag and a valid CRC: decoded without an exception, bounded,
    and no forged tag ever verifies."""
    _, device = _pair()
    header = bytes([2, 1, int(Flags.AUTH), 3, 0, 1]) + struct.pack(">H", max(0, len(data) - 24))
    raw = header + data
    crc = 0xFFFF
    for b in raw:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    raw += crc.to_bytes(2, "big")
    wire = (
        b"\x7e"
        + raw.replace(b"\x7d", b"\x7d\x5d")
        .replace(b"\x7e", b"\x7d\x5e")
        .replace(b"\x7f", b"\x7d\x5f")
        + b"\x7f"
    )
    decoder = FrameDecoder(MAX_PAYLOAD)
    for item in decoder.feed(wire[: flip % (len(wire) + 1)]) + decoder.feed(
        wire[flip % (len(wire) + 1) :]
    ):
        if isinstance(item, Frame):
            assert item.auth is not None
            assert device.check(item.auth) is not Verdict.OK
    assert decoder.buffered <= 2 * (10 + MAX_PAYLOAD + 24) + len(wire)


# --- the key file -----------------------------------------------------------------------------


def test_key_files_are_private_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "room.key"
    key = write_key_file(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_key_file(path).secret == key.secret
    assert key.secret.hex() not in repr(key) and key.secret.hex() not in str(key)
    with pytest.raises(KeyFileError, match="already there"):
        write_key_file(path)
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_key_file(path)
    path.chmod(0o600)
    path.write_text("fluoroctl-room-key 1\nabcd\n")
    with pytest.raises(KeyFileError, match="2 bytes"):
        load_key_file(path)
    path.write_text("something else\n")
    with pytest.raises(KeyFileError, match="not a fluoroctl room key"):
        load_key_file(path)
    with pytest.raises(KeyFileError, match="keys new"):
        load_key_file(tmp_path / "missing.key")
    link = tmp_path / "link.key"
    link.symlink_to(path)
    with pytest.raises(KeyFileError):
        load_key_file(link)  # never follow a link someone could point elsewhere
