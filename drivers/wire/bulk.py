"""Reassembly of BULK transfers (docs/wire-protocol.md §2.6): chunks in any order, duplicates
ignored, the image checked against its CRC-32, memory bounded (``BulkAssembler``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from ._crc import crc32_image
from .codec import BulkChunk, Frame, _bulk_problem


class BulkProblem(IntEnum):
    TIMEOUT = 1
    CRC_MISMATCH = 2
    INCONSISTENT = 3
    TOO_LARGE = 4
    TOO_MANY_TRANSFERS = 5
    LAYOUT = 6


@dataclass(frozen=True, slots=True)
class BulkComplete:
    device: int
    transfer_id: int
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class BulkError:
    device: int
    transfer_id: int
    problem: BulkProblem
    detail: str
    missing: tuple[int, ...] = ()


@dataclass(slots=True)
class _Transfer:
    count: int
    total_size: int
    image_crc: int
    last_seen: float
    received: int = 0
    chunks: dict[int, BulkChunk] = field(default_factory=dict)

    def missing(self) -> tuple[int, ...]:
        return tuple(i for i in range(self.count) if i not in self.chunks)


class BulkAssembler:
    """Reassembles BULK frames from any number of devices; all bounds are constructor arguments.

    Time comes in as ``now`` (seconds, any monotonic clock) so it runs on virtual time.
    Memory is bounded by ``max_transfers * max_transfer_bytes`` plus per-chunk overhead.
    """

    def __init__(
        self,
        *,
        max_transfer_bytes: int = 64 * 1024 * 1024,
        max_chunks: int = 65536,
        max_transfers: int = 4,
        timeout_s: float = 2.0,
        remember_done: int = 64,
    ) -> None:
        self._max_bytes = max_transfer_bytes
        self._max_chunks = max_chunks
        self._max_transfers = max_transfers
        self._timeout_s = timeout_s
        self._remember_done = remember_done
        self._transfers: dict[tuple[int, int], _Transfer] = {}
        # Finished or refused transfers: late duplicates must not reopen them.
        self._done: dict[tuple[int, int], float] = {}

    @property
    def in_progress(self) -> int:
        return len(self._transfers)

    @property
    def buffered_bytes(self) -> int:
        return sum(t.received for t in self._transfers.values())

    def missing(self, device: int, transfer_id: int) -> tuple[int, ...] | None:
        """Chunk indices not yet received, or None if the transfer is not in progress."""
        t = self._transfers.get((device, transfer_id))
        return None if t is None else t.missing()

    def add(self, frame: Frame, now: float) -> BulkComplete | BulkError | None:
        """Take one BULK frame; returns the finished image, a problem, or None (more to come)."""
        chunk = frame.message
        if not isinstance(chunk, BulkChunk):
            raise TypeError(f"not a BULK frame: {frame.msg_type.name}")
        key = (frame.device, chunk.transfer_id)
        problem = _bulk_problem(
            chunk.index, chunk.count, chunk.offset, chunk.total_size, len(chunk.data)
        )
        if problem:
            return BulkError(frame.device, chunk.transfer_id, BulkProblem.INCONSISTENT, problem)
        if key in self._done:
            return None
        t = self._transfers.get(key)
        if t is None:
            refused = self._refuse(chunk)
            if refused is not None:
                self._finish(key, now)
                return BulkError(frame.device, chunk.transfer_id, *refused)
            t = _Transfer(chunk.count, chunk.total_size, chunk.image_crc, now)
            self._transfers[key] = t
        t.last_seen = now
        if (chunk.count, chunk.total_size, chunk.image_crc) != (t.count, t.total_size, t.image_crc):
            detail = "chunk disagrees with the transfer's count, size or CRC; dropped"
            return BulkError(frame.device, chunk.transfer_id, BulkProblem.INCONSISTENT, detail)
        if chunk.index in t.chunks:
            return None
        if t.received + len(chunk.data) > t.total_size:
            detail = "chunks add up to more than total_size; dropped"
            return BulkError(frame.device, chunk.transfer_id, BulkProblem.INCONSISTENT, detail)
        t.chunks[chunk.index] = chunk
        t.received += len(chunk.data)
        if len(t.chunks) < t.count:
            return None
        del self._transfers[key]
        self._finish(key, now)
        return _assemble(frame.device, chunk.transfer_id, t)

    def expire(self, now: float) -> list[BulkError]:
        """Drop transfers idle for ``timeout_s``; call it periodically (e.g. per heartbeat)."""
        out: list[BulkError] = []
        for key, t in list(self._transfers.items()):
            if now - t.last_seen >= self._timeout_s:
                del self._transfers[key]
                detail = f"{len(t.chunks)} of {t.count} chunks after {self._timeout_s} s idle"
                out.append(BulkError(*key, BulkProblem.TIMEOUT, detail, t.missing()))
        for key, when in list(self._done.items()):
            if now - when >= self._timeout_s:
                del self._done[key]
        return out

    def _refuse(self, chunk: BulkChunk) -> tuple[BulkProblem, str] | None:
        if chunk.total_size > self._max_bytes or chunk.count > self._max_chunks:
            detail = f"{chunk.total_size} bytes in {chunk.count} chunks is over the limit"
            return BulkProblem.TOO_LARGE, detail
        if chunk.count > max(1, chunk.total_size):
            return BulkProblem.INCONSISTENT, "more chunks than bytes"
        if len(self._transfers) >= self._max_transfers:
            # Refused transfers are remembered like finished ones, so the sender's remaining
            # chunks are dropped quietly instead of producing one error each.
            return BulkProblem.TOO_MANY_TRANSFERS, f"{self._max_transfers} already in progress"
        return None

    def _finish(self, key: tuple[int, int], now: float) -> None:
        self._done[key] = now
        while len(self._done) > self._remember_done:
            del self._done[next(iter(self._done))]


def _assemble(device: int, transfer_id: int, t: _Transfer) -> BulkComplete | BulkError:
    parts: list[bytes] = []
    offset = 0
    for i in range(t.count):
        chunk = t.chunks[i]
        if chunk.offset != offset:
            detail = f"chunk {i} at offset {chunk.offset}, expected {offset}"
            return BulkError(device, transfer_id, BulkProblem.LAYOUT, detail)
        parts.append(chunk.data)
        offset += len(chunk.data)
    if offset != t.total_size:
        detail = f"chunks cover {offset} of {t.total_size} bytes"
        return BulkError(device, transfer_id, BulkProblem.LAYOUT, detail)
    data = b"".join(parts)
    if crc32_image(data) != t.image_crc:
        return BulkError(device, transfer_id, BulkProblem.CRC_MISMATCH, "image CRC-32 mismatch")
    return BulkComplete(device, transfer_id, data)
