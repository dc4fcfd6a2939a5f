"""The fault hooks of the simulated device endpoint: line noise, damaged and lost frames, a hung
firmware. Tests and ``sim serve --fault`` use them; a real device has none of this."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from drivers.clock import Clock
from drivers.links.memory import flip_one_bit
from drivers.wire import MsgType

if TYPE_CHECKING:
    from drivers.wire.liveness import Liveness

    from .endpoint import EndpointStats


class FaultHooks:
    """Mixed into :class:`~hardware_sim.wire.endpoint.DeviceEndpoint`: ``_apply_faults`` is
    called on every frame sent while ``_faults`` is set (the hot path checks only that)."""

    stats: EndpointStats
    _live: Liveness
    _clock: Clock

    def _init_faults(self) -> None:
        self._faults = False
        self._garbage = b""
        self._corrupt = 0
        self._corrupt_kind: MsgType | None = None
        self._drop_replies = 0
        self._drop_chunks: set[int] = set()
        self._stalled = False

    def inject_garbage(self, n_bytes: int, *, seed: int | None = None) -> None:
        """Put ``n_bytes`` of random line noise before the next frame sent."""
        self._garbage += random.Random(seed).randbytes(n_bytes)
        self._faults = True

    def corrupt_next_frames(self, n: int = 1, kind: MsgType | None = None) -> None:
        """Flip one bit in each of the next ``n`` frames sent (of type ``kind``, if given)."""
        self._corrupt += n
        self._corrupt_kind = kind
        self._faults = True

    def drop_next_replies(self, n: int = 1) -> None:
        """Lose the next ``n`` REPLY frames (requests still execute; replies stay cached)."""
        self._drop_replies += n
        self._faults = True

    def drop_bulk_chunks(self, *indices: int) -> None:
        """Skip these chunk indices when the next transfer is first sent (resend still works)."""
        self._drop_chunks.update(indices)

    def stall(self, stalled: bool = True) -> None:
        """Freeze (a hung firmware): nothing is sent, received frames are ignored."""
        self._stalled = stalled
        self._faults = True
        if not stalled:
            self._live.last_rx = self._clock.now()  # a frozen device did not notice time pass
            self._faults = bool(self._garbage or self._corrupt or self._drop_replies)

    def _apply_faults(self, data: bytes, kind: MsgType) -> bytes | None:
        if self._stalled:
            return None
        if self._drop_replies and kind is MsgType.REPLY:
            self._drop_replies -= 1
            self.stats.replies_dropped += 1
            self._faults = bool(self._corrupt or self._garbage or self._drop_replies)
            return None
        if self._corrupt and (self._corrupt_kind is None or self._corrupt_kind is kind):
            self._corrupt -= 1
            data = flip_one_bit(data)
        if self._garbage:
            data = self._garbage + data
            self._garbage = b""
        self._faults = bool(self._corrupt or self._garbage or self._drop_replies)
        return data
