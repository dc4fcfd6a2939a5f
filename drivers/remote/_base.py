"""Plumbing every reference driver shares: event fan-out, op tracking, link state."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from ..events import DeviceEvent, EventSource
from ..wire import Scalar
from ._channel import Channel
from ._fields import LIST_FIELDS, names
from ._ops import Operations

log = logging.getLogger(__name__)

#: Wire fields that are protocol plumbing, not part of the device's event data.
_PLUMBING = frozenset({"t_s", "op_id"})


class RemoteDevice:
    """Mixed into each reference driver: republishes wire events as :class:`DeviceEvent`."""

    name: str
    #: wire events that are plumbing for this driver, not device events for the record
    _internal_events: frozenset[str] = frozenset()

    def _attach(self, channel: Channel) -> None:
        self._channel = channel
        self._ops = Operations(self.name)
        self._link_up = True
        self._link_detail = ""
        self._detach: list[Callable[[], None]] = [
            channel.subscribe(self._on_wire_event),
            channel.on_link_state(self._on_link_state),
        ]
        on_security = getattr(channel, "on_security", None)  # optional for vendor channels
        if on_security is not None:
            self._detach.append(on_security(self._on_security))

    def _on_wire_event(self, name: str, fields: Mapping[str, Scalar], host_time_s: float) -> None:
        if self._ops.on_event(name, fields):
            return
        self._on_device_event(name, fields, host_time_s)
        if name in self._internal_events:
            return
        assert isinstance(self, EventSource)
        self._publish(DeviceEvent(self.name, name, host_time_s, self._host_data(fields)))

    def _host_data(self, fields: Mapping[str, Scalar]) -> dict[str, Scalar | tuple[str, ...]]:
        """Event fields as the device meant them: device times (``*_t_s``) mapped onto the host
        clock (``*_at_s``), list fields (:data:`LIST_FIELDS`) back from comma-joined strings to
        tuples of str."""
        data: dict[str, Scalar | tuple[str, ...]] = {}
        for key, value in fields.items():
            if key in _PLUMBING:
                continue
            if key.endswith("_t_s") and isinstance(value, int | float):
                data[key[: -len("_t_s")] + "_at_s"] = self._channel.to_host_time(float(value))
            elif key in LIST_FIELDS:
                data[key] = names(value)
            else:
                data[key] = value
        return data

    def _on_device_event(self, name: str, fields: Mapping[str, Scalar], host_time_s: float) -> None:
        """Driver-specific bookkeeping before the event is published (override)."""

    def _on_link_state(self, up: bool, detail: str) -> None:
        self._link_up = up
        self._link_detail = detail
        if not up:
            self._ops.fail_all(f"link {self._channel.link_url} lost: {detail}")
        assert isinstance(self, EventSource)
        kind = "link_up" if up else "link_lost"
        now = asyncio.get_running_loop().time()
        self._publish(
            DeviceEvent(self.name, kind, now, {"link": self._channel.link_url, "detail": detail})
        )

    def _on_security(self, kind: str, count: int, detail: str) -> None:
        """Frames the session layer dropped (forged, replayed, unauthenticated): published as
        ``security`` events, so the exam journals them (docs/security.md)."""
        assert isinstance(self, EventSource)
        now = asyncio.get_running_loop().time()
        data = {"link": self._channel.link_url, "what": kind, "count": count, "detail": detail}
        self._publish(DeviceEvent(self.name, "security", now, data))

    async def aclose(self) -> None:
        for detach in self._detach:
            detach()
        self._ops.fail_all("driver closed")
        await self._channel.close()
