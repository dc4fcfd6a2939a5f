"""Checksums of the wire protocol, both computed in C by the standard library.

``binascii.crc_hqx`` is the CCITT polynomial 0x1021, unreflected, with no final XOR; its second
argument is the initial register. With init 0xFFFF that is CRC-16/CCITT-FALSE (check value
0x29B1 for b"123456789"); with init 0 it would be CRC-16/XMODEM (0x31C3).
"""

from __future__ import annotations

import binascii
import zlib

CRC16_INIT = 0xFFFF


def crc16_ccitt_false(data: bytes | bytearray | memoryview, crc: int = CRC16_INIT) -> int:
    """CRC-16/CCITT-FALSE of ``data``; pass a previous result as ``crc`` to continue it."""
    return binascii.crc_hqx(data, crc)


def crc32_image(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """CRC-32/ISO-HDLC (zlib) of a whole bulk transfer; ~8x faster than crc_hqx per byte."""
    return zlib.crc32(data, crc)
