"""Typed device errors: every failure says which device, which operation and what happened.

Errors raised by a driver that talks over a link also name the link (``link``, a URL), so a
message in the journal points at the cable as well as the device.
"""

from __future__ import annotations

from collections.abc import Mapping


class DeviceError(Exception):
    """Base of every error a device driver raises."""

    def __init__(self, device: str, operation: str, detail: str, *, link: str = "") -> None:
        where = f" (link {link})" if link else ""
        super().__init__(f"{device}: {operation}: {detail}{where}")
        self.device = device
        self.operation = operation
        self.detail = detail
        self.link = link


class DeviceTimeout(DeviceError):
    """The device did not complete ``operation`` within its bound.

    For fire-once operations (exposure, injection start) the outcome is *unknown*: callers
    must query state, never re-send.
    """

    def __init__(
        self,
        device: str,
        operation: str,
        timeout_s: float,
        *,
        detail: str = "",
        link: str = "",
    ) -> None:
        text = f"no completion within {timeout_s:.3g} s" + (f": {detail}" if detail else "")
        super().__init__(device, operation, text, link=link)
        self.timeout_s = timeout_s


class AmbiguousCommand(DeviceTimeout):
    """A fire-once command whose outcome is unknown: it may or may not have taken effect.

    Raised instead of re-sending (docs/wire-protocol.md §2.2) when the reply did not come, the
    request was NAK'd or the link dropped while it was outstanding. ``cause`` is ``"timeout"``,
    ``"nak"``, ``"link_lost"`` or ``"closed"`` (the client was closed while waiting). The
    driver must query the device's state (``status``) and decide from that; it must never send
    the command again blindly.
    """

    def __init__(
        self,
        device: str,
        operation: str,
        timeout_s: float,
        *,
        cause: str,
        detail: str = "",
        link: str = "",
    ) -> None:
        text = f"outcome unknown ({cause})" + (f": {detail}" if detail else "")
        super().__init__(device, operation, timeout_s, detail=text, link=link)
        self.cause = cause


class DeviceFault(DeviceError):
    """The device reported a fault (over-pressure, generator fault, stall, ...)."""

    def __init__(
        self, device: str, operation: str, fault: str, detail: str = "", *, link: str = ""
    ) -> None:
        text = f"fault {fault}" + (f": {detail}" if detail else "")
        super().__init__(device, operation, text, link=link)
        self.fault = fault


#: the ``fault`` of a :class:`DeviceLimitExceeded` (and of the wire INTERLOCK reply for it)
LIMIT_FAULT = "device_limit"


class DeviceLimitExceeded(DeviceFault):
    """The device refused a command beyond its own hard limits (defence in depth: whatever
    the host asked). Nothing was done: no program armed, no contrast, no exposure.

    ``limit`` names the device's limit (``max_volume_ml``, ``max_kv``, ...); ``value`` is what
    was asked and ``bound`` the limit, in ``unit``. Over a wire link the refusal is an
    INTERLOCK reply whose ``fault`` is :data:`LIMIT_FAULT`; :meth:`from_fault` rebuilds it.
    """

    def __init__(
        self,
        device: str,
        operation: str,
        limit: str,
        value: float | None = None,
        bound: float | None = None,
        unit: str = "",
        *,
        below: bool = False,
        detail: str = "",
        link: str = "",
    ) -> None:
        if not detail:
            side = "below the minimum" if below else "beyond the limit"
            asked = "" if value is None else f" {value:g} {unit}".rstrip()
            of = "" if bound is None else f" of {bound:g} {unit}".rstrip()
            detail = f"{limit}:{asked} is {side}{of} the device allows"
        super().__init__(device, operation, LIMIT_FAULT, detail, link=link)
        #: the refusal in words, without the ``fault device_limit:`` prefix (the wire message)
        self.reason = detail
        self.limit = limit
        self.value = value
        self.bound = bound
        self.unit = unit

    @classmethod
    def from_fields(
        cls,
        device: str,
        operation: str,
        fields: Mapping[str, object],
        message: str,
        *,
        link: str = "",
    ) -> DeviceLimitExceeded:
        """The refusal a wire reply or ``op.failed`` event carried: its ``limit``, ``value``,
        ``bound`` and ``unit`` fields, else (a device that sends only a message) the message."""
        limit = fields.get("limit")
        if not isinstance(limit, str) or not limit:
            return cls.from_fault(DeviceFault(device, operation, LIMIT_FAULT, message, link=link))
        return cls(
            device,
            operation,
            limit,
            _number(fields.get("value")),
            _number(fields.get("bound")),
            str(fields.get("unit") or ""),
            detail=message,
            link=link,
        )

    @classmethod
    def from_fault(cls, exc: DeviceFault) -> DeviceLimitExceeded:
        """The refusal a wire reply carried (its message begins with the limit's name)."""
        reason = exc.detail
        prefix = f"fault {LIMIT_FAULT}: "
        while reason.startswith(prefix):
            reason = reason[len(prefix) :]
        limit = reason.split(":", 1)[0].strip() or "unknown"
        return cls(exc.device, exc.operation, limit, detail=reason, link=exc.link)


class DeviceStateError(DeviceError):
    """The command is not valid in the device's current state (e.g. start while not armed)."""


class DeviceBusy(DeviceError):
    """The device answered BUSY: it cannot accept the command now; an idempotent one may be
    tried again later (with a new request, since the device caches the BUSY reply by seq)."""


class CommandRejected(DeviceError):
    """The device refused the command itself: ``status`` is ``"BAD_ARG"`` (a field missing, out
    of range or of the wrong type) or ``"UNKNOWN_COMMAND"``. A driver bug, not a device state."""

    def __init__(
        self, device: str, operation: str, status: str, detail: str, *, link: str = ""
    ) -> None:
        super().__init__(device, operation, f"{status}: {detail}", link=link)
        self.status = status


class DeviceLost(DeviceError):
    """The link to the device is gone (heartbeat lost, port closed)."""


class LinkSecurityError(DeviceLost):
    """The wire session could not be opened securely (docs/security.md); not retried blindly."""


class AuthenticationFailed(LinkSecurityError):
    """The peer did not prove it holds the room key, or refused ours: different keys."""


class ControlRefused(LinkSecurityError):
    """Another host holds the device's control lease; this one may only observe."""


class ProtocolMismatch(LinkSecurityError):
    """The device speaks another version of the wire protocol."""


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
