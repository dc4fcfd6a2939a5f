"""The device end of the wire (hardware_sim/serve) and the fields both ends share.

* The injector's since-reset counters are status fields like any other
  (``injector_status_fields`` / ``injector_status_from``); a device that keeps none sends
  none and the host reads ``None``.
* Every service refuses a command beyond its device's own limits the same way: an INTERLOCK
  reply (or an ``op.failed`` event) with ``fault: device_limit`` and the limit's fields.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from drivers import InjectorFault, InjectorState, InjectorStatus
from drivers.errors import LIMIT_FAULT, DeviceLimitExceeded
from drivers.remote._fields import (
    FieldError,
    Fields,
    injector_status_fields,
    injector_status_from,
)
from drivers.wire import Scalar, Status
from hardware_sim.serve._service import Service, error_fields

COUNTED = InjectorStatus(
    InjectorState.COMPLETED,
    40.0,
    0.0,
    0.0,
    0,
    100.0,
    120.0,
    (InjectorFault.OCCLUSION,),
    delivered_total_ml=80.0,
    injections_started=2,
)
REFUSAL = DeviceLimitExceeded("carm", "set_technique", "max_kv", 150.0, 125.0, "kV")


def test_the_injectors_counters_travel_as_status_fields() -> None:
    fields = injector_status_fields(COUNTED)
    assert fields["delivered_total_ml"] == 80.0 and fields["injections_started"] == 2
    back = injector_status_from(fields, lambda t: t + 1.0)
    assert back.delivered_total_ml == 80.0 and back.injections_started == 2
    assert back.started_at_s == 101.0 and back.faults == (InjectorFault.OCCLUSION,)


def test_an_injector_without_counters_reports_none() -> None:
    uncounted = InjectorStatus(InjectorState.IDLE, 0.0, 0.0, 0.0, None, None)
    fields = injector_status_fields(uncounted)
    assert fields["delivered_total_ml"] is None and fields["injections_started"] is None
    back = injector_status_from(fields, lambda t: t)
    assert back.delivered_total_ml is None and back.injections_started is None
    # a device that does not know the fields at all (an older firmware, a vendor's)
    for key in ("delivered_total_ml", "injections_started"):
        del fields[key]
    back = injector_status_from(fields, lambda t: t)
    assert back.delivered_total_ml is None and back.injections_started is None


@pytest.mark.parametrize(
    ("key", "value"), [("delivered_total_ml", "lots"), ("injections_started", 1.5)]
)
def test_a_mistyped_counter_is_named(key: str, value: Scalar) -> None:
    with pytest.raises(FieldError, match=key):
        injector_status_from(injector_status_fields(COUNTED) | {key: value}, lambda t: t)


def test_error_fields_make_a_limit_refusal_an_interlock_naming_the_limit() -> None:
    status, fields = error_fields(REFUSAL)
    assert status is Status.INTERLOCK
    assert fields == {
        "error": "interlock",
        "fault": LIMIT_FAULT,
        "limit": "max_kv",
        "value": 150.0,
        "bound": 125.0,
        "unit": "kV",
        "message": REFUSAL.reason,
    }
    assert "max_kv" in str(fields["message"])
    assert not str(fields["message"]).startswith("fault ")


class _Limited(Service):
    """Any service, not one written to refuse limits: the base class does it."""

    async def cmd_move(self, f: Mapping[str, Scalar]) -> Fields:
        raise DeviceLimitExceeded(self.name, "move", "max_speed_mm_s", 900.0, 300.0, "mm/s")


def test_every_service_refuses_a_limit_with_interlock(run_virtual) -> None:
    async def go() -> None:
        status, fields = await _Limited("table", lambda: 0.0).handle("move", {})
        assert status is Status.INTERLOCK
        assert fields["fault"] == LIMIT_FAULT and fields["limit"] == "max_speed_mm_s"
        assert fields["value"] == 900.0 and fields["bound"] == 300.0 and fields["unit"] == "mm/s"

    run_virtual(go)
