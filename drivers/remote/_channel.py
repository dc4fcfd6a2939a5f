"""What a reference driver needs from its wire endpoint (implemented by ``WireClient``).

Drivers are written against this protocol so they can be tested with an in-memory channel and
so a vendor can put the same drivers on an endpoint of their own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from ..wire import Scalar

EventCallback = Callable[[str, Mapping[str, Scalar], float], None]
LinkStateCallback = Callable[[bool, str], None]


class Channel(Protocol):
    @property
    def link_url(self) -> str: ...

    async def call(
        self,
        command: str,
        fields: Mapping[str, Scalar] | None = None,
        *,
        fire_once: bool = False,
        timeout_s: float | None = None,
    ) -> dict[str, Scalar]: ...

    def subscribe(self, callback: EventCallback) -> Callable[[], None]: ...

    def on_link_state(self, callback: LinkStateCallback) -> Callable[[], None]: ...

    def to_host_time(self, device_time_s: float) -> float: ...

    async def bulk(self, transfer_id: int, *, timeout_s: float) -> bytes: ...

    async def close(self) -> None: ...
