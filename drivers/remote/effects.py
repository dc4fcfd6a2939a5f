"""Operator actions forwarded to a simulated room in another process (``sim serve``).

A real room has no such link: the technologist's hands turn the patient. Against ``sim serve``
the simulated patient must learn of them, so the scheduler's confirmed actions travel here.
"""

from __future__ import annotations

from ._channel import Channel


class RemoteEffects:
    def __init__(self, channel: Channel) -> None:
        self._channel = channel

    async def apply(self, action: str, position: str | None = None) -> None:
        # Safe to retry: the device answers a repeated sequence number from its reply cache.
        await self._channel.call("apply", {"action": action, "position": position})

    async def contrast_mg_ml(self) -> dict[str, float]:
        """The simulated patient's iodine per compartment now (a read: safe to retry)."""
        fields = await self._channel.call("contrast", timeout_s=2.0)
        return {k: float(v) for k, v in fields.items() if isinstance(v, int | float)}

    async def aclose(self) -> None:
        await self._channel.close()
