"""Device clock → host clock: the offset of the request/reply pair with the least uncertainty.

A reply stamped ``t_s`` by the device was produced somewhere between the request leaving and the
reply arriving, so ``offset = t_s - (sent + received) / 2`` is off by at most half the round trip
(NTP's reasoning). The estimator keeps the sample with the smallest bound, and lets a kept sample's
bound grow with its age at ``drift`` (seconds per second) so a fresher, slightly slower exchange
replaces it once the two clocks may have drifted apart by more.
"""

from __future__ import annotations

import math


class OffsetEstimator:
    def __init__(self, drift: float = 1e-4) -> None:
        self._drift = drift
        self.offset: float | None = None
        self._bound = math.inf  # half the round trip of the kept sample
        self._at = 0.0  # when it was taken (host time)

    @property
    def uncertainty_s(self) -> float:
        """Half the round trip of the kept sample (inf while only a rough guess is known)."""
        return self._bound

    def uncertainty_at(self, now: float) -> float:
        """The kept sample's bound grown by the drift since it was taken (host time ``now``)."""
        return self._bound + max(0.0, now - self._at) * self._drift

    def age_s(self, now: float) -> float:
        """Host seconds since the kept sample was taken (inf while none)."""
        return math.inf if self._bound == math.inf else now - self._at

    def reset(self) -> None:
        self.offset = None
        self._bound = math.inf

    def exchange(self, sent: float, received: float, device_t: float) -> None:
        """One request/reply: sent and received on the host clock, ``device_t`` from the reply."""
        bound = (received - sent) * 0.5
        if bound < 0:
            return
        if bound <= self._bound + (received - self._at) * self._drift:
            self.offset = device_t - (sent + received) * 0.5
            self._bound = bound
            self._at = received

    def rough(self, received: float, device_t: float) -> None:
        """A one-way stamp (an event): used only until a request/reply pair is known."""
        if self.offset is None:
            self.offset = device_t - received
            self._at = received

    def to_host(self, device_t: float) -> float:
        """Host time of device time ``device_t``; the identity until anything is known."""
        offset = self.offset
        return device_t if offset is None else device_t - offset

    def to_device(self, host_t: float) -> float:
        """Device time of host time ``host_t`` (the inverse of :meth:`to_host`)."""
        offset = self.offset
        return host_t if offset is None else host_t + offset
