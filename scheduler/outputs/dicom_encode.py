"""Encoding the image store's datasets as DICOM Part 10 files (Explicit VR Little Endian).

pydicom's generic writer spent ≈ 3 ms per stored radiograph on ≈ 90 elements (a value buffer,
charset lookup, emptiness and ambiguity checks per element, the 2 MiB Pixel Data copied twice),
a quarter of the host latency budget (decision 0020). The datasets :func:`.dicom.build_dataset`
makes use a small, fixed set of VRs and value types, so this module encodes them directly: the
header into one ``bytes``, the Pixel Data written from its own buffer.

It produces what ``Dataset.save_as(f, enforce_file_format=True)`` produces, byte for byte (the
tests compare every kind of image object the store writes, sequences, non-ASCII names and
every VR handled here). Anything outside that set (another transfer syntax, a multi-charset
Specific Character Set, an ambiguous VR other than Pixel Data's, a value type it does not
know, an over-long value) raises :class:`Unsupported` before anything is written;
:func:`write_image` and :func:`write_part10` then leave the object to pydicom.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Iterable
from typing import IO, Any

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from .dicom_attrs import ImageAttributes

__all__ = ["Unsupported", "encode_attributes", "encode_header", "write_image", "write_part10"]

_PREAMBLE = b"\x00" * 128 + b"DICM"
#: Explicit VR with a 4-byte length (PS3.5 Table 7.1-1); every other VR has 2 bytes
_LONG_LENGTH = frozenset(
    {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
)
#: text in the Specific Character Set; other text VRs are in the default repertoire
_CHARSET_TEXT = frozenset({"LO", "LT", "PN", "SH", "ST", "UC", "UT"})
_DEFAULT_TEXT = frozenset({"AE", "AS", "CS", "DA", "DT", "TM"})
_NUMBERS = {"US": "H", "UL": "I", "SS": "h", "SL": "i", "FL": "f", "FD": "d"}
#: Specific Character Set → Python codec, for the single-byte or UTF-8 sets we write
_CODECS = {"": "latin_1", "ISO_IR 6": "latin_1", "ISO_IR 100": "latin_1", "ISO_IR 192": "utf_8"}
_VERSION = b"\x00\x01"
_ITEM = struct.pack("<HH", 0xFFFE, 0xE000)
_PIXEL_DATA = 0x7FE00010


class Unsupported(ValueError):
    """The dataset holds something this encoder does not write; pydicom's writer will."""


def _codec(ds: Dataset, parent: str) -> str:
    charset = ds.get("SpecificCharacterSet")
    if charset is None:
        return parent
    if isinstance(charset, MultiValue):
        if len(charset) != 1:
            raise Unsupported(f"Specific Character Set {list(charset)}")
        charset = charset[0]
    try:
        return _CODECS[str(charset)]
    except KeyError:
        raise Unsupported(f"Specific Character Set {charset!r}") from None


def _values(value: Any) -> list[Any]:
    return list(value) if isinstance(value, MultiValue | list | tuple) else [value]


def _text(value: Any, codec: str) -> bytes:
    try:
        return b"\\".join(str(v).encode(codec) for v in _values(value))
    except UnicodeEncodeError as exc:  # pydicom warns and replaces; let it
        raise Unsupported(str(exc)) from None


def _number_string(value: Any) -> bytes:
    parts = [v.original_string if hasattr(v, "original_string") else str(v) for v in _values(value)]
    return "\\".join(parts).encode("latin_1")


def _value(tag: int, vr: str, value: Any, codec: str) -> bytes | memoryview:
    if value is None or value == "" or (isinstance(value, MultiValue | list) and not value):
        return b""
    if vr in _CHARSET_TEXT:
        return _text(value, codec)
    if vr in _DEFAULT_TEXT:
        if not all(isinstance(v, str) for v in _values(value)):
            raise Unsupported(f"{vr} value of type {type(value).__name__}")
        return _text(value, "latin_1")
    if vr == "UI":
        return _text(value, "latin_1")
    if vr in ("DS", "IS"):
        return _number_string(value)
    if vr in _NUMBERS:
        values = _values(value)
        return struct.pack(f"<{len(values)}{_NUMBERS[vr]}", *values)
    if vr == "AT":
        tags = [int(t) for t in _values(value)]
        return struct.pack(f"<{2 * len(tags)}H", *(h for t in tags for h in (t >> 16, t & 0xFFFF)))
    if vr in ("OB", "OW") and isinstance(value, bytes | bytearray):
        return memoryview(value)
    raise Unsupported(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) {vr} {type(value).__name__}")


def _resolved_vr(tag: int, vr: str, bits_allocated: int) -> str:
    """``vr`` as pydicom resolves it for Explicit VR: Pixel Data's "OB or OW" by Bits
    Allocated; any other ambiguous VR is left to pydicom."""
    if " or " not in vr:
        return vr
    if tag == _PIXEL_DATA and vr == "OB or OW":
        return "OW" if bits_allocated > 8 else "OB"
    raise Unsupported(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) has the ambiguous VR {vr}")


def _element(tag: int, vr: str, data: bytes | memoryview, out: list[bytes | memoryview]) -> None:
    length = len(data)
    pad = length % 2
    if vr in _LONG_LENGTH:
        out.append(struct.pack("<HH2sHI", tag >> 16, tag & 0xFFFF, vr.encode(), 0, length + pad))
    elif length + pad > 0xFFFF:
        raise Unsupported(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) {vr} value of {length} bytes")
    else:
        out.append(struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr.encode(), length + pad))
    if length:
        out.append(data)
    if pad:
        out.append(b"\x00" if vr in ("UI", "OB", "OW") else b" ")


def _dataset(ds: Dataset, parent_codec: str, out: list[bytes | memoryview]) -> None:
    codec = _codec(ds, parent_codec)
    for tag in sorted(ds.keys()):
        if tag.element == 0 and tag.group > 6:
            continue  # retired group lengths are not written (PS3.5 7.2)
        elem = ds.get_item(tag)
        if not isinstance(elem, DataElement):
            raise Unsupported(f"{tag} is a raw element")
        vr = _resolved_vr(int(tag), str(elem.VR), int(ds.get("BitsAllocated", 0)))
        if vr == "SQ":
            _sequence(int(tag), elem, elem.value, codec, out)
        else:
            _element(int(tag), vr, _value(int(tag), vr, elem.value, codec), out)


def _sequence(
    tag: int, elem: DataElement, items: Iterable[Dataset], codec: str, out: list[bytes | memoryview]
) -> None:
    if elem.is_undefined_length or not isinstance(items, Sequence):
        raise Unsupported(f"sequence {tag:08X} of undefined length")
    _items(tag, items, codec, out)


def _items(tag: int, items: Iterable[Dataset], codec: str, out: list[bytes | memoryview]) -> None:
    body: list[bytes | memoryview] = []
    for item in items:
        if getattr(item, "is_undefined_length_sequence_item", False):
            raise Unsupported(f"an item of sequence {tag:08X} has undefined length")
        encoded: list[bytes | memoryview] = []
        _dataset(item, codec, encoded)
        content = b"".join(encoded)
        body += [_ITEM, struct.pack("<I", len(content)), content]
    _element(tag, "SQ", b"".join(body), out)


def _file_meta(meta: Dataset | None, sop_class: object, sop_instance: object) -> bytes:
    """Group 2 as pydicom's ``enforce_file_format`` writes it: its length first, the
    version added when missing."""
    if meta is None or meta.get("TransferSyntaxUID") != ExplicitVRLittleEndian:
        raise Unsupported("only Explicit VR Little Endian files with file meta are written")
    if meta.get("MediaStorageSOPClassUID") != sop_class:
        raise Unsupported("file meta's SOP Class UID differs from the dataset's")
    if meta.get("MediaStorageSOPInstanceUID") != sop_instance:
        raise Unsupported("file meta's SOP Instance UID differs from the dataset's")
    for keyword in ("ImplementationClassUID", "ImplementationVersionName"):
        if not meta.get(keyword):  # pydicom would add its own
            raise Unsupported(f"file meta without {keyword}")
    version = meta.get("FileMetaInformationVersion")
    if version is not None and not version:
        raise Unsupported("an empty File Meta Information Version")  # pydicom sets it
    group: list[bytes | memoryview] = []
    if "FileMetaInformationVersion" not in meta:
        _element(0x00020001, "OB", _VERSION, group)
    elements = Dataset()
    for elem in meta:
        if elem.tag != 0x00020000:
            elements.add(elem)
    _dataset(elements, "latin_1", group)
    body = b"".join(group)
    length: list[bytes | memoryview] = []
    _element(0x00020000, "UL", struct.pack("<I", len(body)), length)
    return b"".join(length) + body


def _file(meta: bytes, out: list[bytes | memoryview]) -> tuple[bytes, bytes | memoryview | None]:
    """Preamble, file meta and the encoded elements, the last element's value apart when it
    is a byte buffer (the Pixel Data: written from its own buffer, not copied)."""
    last = out.pop() if out and isinstance(out[-1], memoryview) else None
    return _PREAMBLE + meta + b"".join(out), last


def encode_header(ds: Dataset) -> tuple[bytes, bytes | memoryview | None]:
    """The file up to its last element's value, and that value when it is a byte buffer
    (the Pixel Data, written from its own buffer), else ``None``.

    Raises :class:`Unsupported` for what only pydicom writes.
    """
    preamble = getattr(ds, "preamble", None)
    if preamble and preamble != _PREAMBLE[:128]:
        raise Unsupported("a preamble of its own")
    out: list[bytes | memoryview] = []
    _dataset(ds, "latin_1", out)
    meta = _file_meta(
        getattr(ds, "file_meta", None), ds.get("SOPClassUID"), ds.get("SOPInstanceUID")
    )
    return _file(meta, out)


@functools.cache
def _entry(keyword: str) -> tuple[int, str]:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise Unsupported(f"{keyword!r} is not a DICOM keyword")
    return tag, dictionary_VR(tag)


def _strings(value: Any, vr: str) -> list[Any]:
    """What pydicom makes of a value as it sets it: a list splits into values, a string
    splits at backslashes (except in the VRs that may hold them)."""
    if isinstance(value, list):
        return value
    if isinstance(value, str) and vr not in ("LT", "ST", "UT") and "\\" in value:
        return value.split("\\")
    return [value]


def _attribute(tag: int, vr: str, value: Any, codec: str) -> bytes | memoryview:
    """An attribute's value as a plain Python value: converted here as pydicom converts it
    when it is set (``Unsupported`` for any type this does not follow it for), then
    written by :func:`_value` as a ``Dataset``'s would be."""
    if isinstance(value, tuple):
        raise Unsupported("a tuple value (pydicom takes it as one value)")
    if value is None or (vr in ("OB", "OW") and isinstance(value, bytes)):
        return _value(tag, vr, value, codec)
    parts = _strings(value, vr)
    if vr in ("DS", "IS"):
        if not all(isinstance(v, str) or (vr == "IS" and type(v) is int) for v in parts):
            raise Unsupported(f"{vr} from {type(value).__name__} (pydicom's formatting)")
        parts = [v.strip() if isinstance(v, str) else str(v) for v in parts]
    elif vr in _CHARSET_TEXT or vr in _DEFAULT_TEXT or vr == "UI":
        if not all(isinstance(v, str) for v in parts):
            raise Unsupported(f"{vr} from {type(value).__name__}")
    elif vr in _NUMBERS:
        numbers = (int, float) if vr in ("FL", "FD") else (int,)
        if not all(type(v) in numbers for v in parts):
            raise Unsupported(f"{vr} from {type(value).__name__}")
    elif vr != "AT" or not all(isinstance(v, int) for v in parts):
        raise Unsupported(f"{vr} from {type(value).__name__}")
    return _value(tag, vr, parts, codec)


def encode_attributes(attrs: ImageAttributes) -> tuple[bytes, bytes | memoryview | None]:
    """:func:`encode_header` for attributes not yet made a ``Dataset``: the same bytes as
    pydicom's writer gives for ``attrs.to_dataset()``."""
    charset = attrs.SpecificCharacterSet if "SpecificCharacterSet" in attrs else ""
    if not isinstance(charset, str) or charset not in _CODECS:
        raise Unsupported(f"Specific Character Set {charset!r}")
    codec = _CODECS[charset]
    bits = attrs.BitsAllocated if "BitsAllocated" in attrs else 0
    elements = []
    for keyword, value in attrs.items():
        tag, vr = _entry(keyword)
        elements.append((tag, _resolved_vr(tag, vr, bits), value))
    elements.sort(key=lambda e: e[0])
    out: list[bytes | memoryview] = []
    for tag, vr, value in elements:
        if vr == "SQ":
            if not all(isinstance(item, Dataset) for item in value):
                raise Unsupported(f"sequence {tag:08X} of other than datasets")
            _items(tag, value, codec, out)
        else:
            _element(tag, vr, _attribute(tag, vr, value, codec), out)
    return _file(_file_meta(attrs.file_meta, attrs.SOPClassUID, attrs.SOPInstanceUID), out)


def write_image(attrs: ImageAttributes, f: IO[bytes]) -> None:
    """Write the image object ``attrs`` describes to ``f`` (pydicom writes what this module
    does not cover)."""
    _write(f, lambda: encode_attributes(attrs), attrs.to_dataset)


def write_part10(ds: Dataset, f: IO[bytes]) -> None:
    """Write ``ds`` to ``f`` as ``ds.save_as(f, enforce_file_format=True)`` would."""
    _write(f, lambda: encode_header(ds), lambda: ds)


def _write(
    f: IO[bytes],
    encode: Callable[[], tuple[bytes, bytes | memoryview | None]],
    dataset: Callable[[], Dataset],
) -> None:
    try:
        header, last = encode()
    except Unsupported:
        dataset().save_as(f, enforce_file_format=True)
        return
    f.write(header)
    if last is not None:
        f.write(last)
