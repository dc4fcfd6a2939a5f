"""Receive window over one sequence space: duplicates out, gaps reported, late arrivals kept.

A critical event that was lost is re-sent with its old ``seq`` after newer events got through,
so "older than the newest" does not mean "already seen". The window remembers which of the last
``size`` seqs arrived (a bit mask, as in IPsec anti-replay) and accepts each seq exactly once.
"""

from __future__ import annotations

from .codec import seq_delta


class SeqWindow:
    def __init__(self, size: int = 1024) -> None:
        self._size = size
        self._mask_all = (1 << size) - 1
        self._last: int | None = None
        self._seen = 0  # bit i: seq (last - i) arrived

    @property
    def last(self) -> int | None:
        return self._last

    def reset(self) -> None:
        self._last = None
        self._seen = 0

    def accept(self, seq: int) -> tuple[bool, int]:
        """``(new, missed)``: whether ``seq`` is new, and how many seqs it skipped (a gap)."""
        last = self._last
        if last is None:
            self._last = seq
            self._seen = 1
            return True, 0
        d = seq_delta(seq, last)
        if d > 0:
            self._seen = ((self._seen << d) | 1) & self._mask_all if d < self._size else 1
            self._last = seq
            return True, d - 1
        back = -d
        if back >= self._size:
            return False, 0  # too old to tell: treat as a duplicate
        bit = 1 << back
        if self._seen & bit:
            return False, 0
        self._seen |= bit
        return True, 0
