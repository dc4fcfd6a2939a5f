"""Hazard (issue 12, follow-up): the C-arm behind a wire link refused a technique beyond its
own limits, and the host saw a bare ``DeviceFault`` (or, for a refusal reported by an
``op.failed`` event, an untyped ``DeviceError``) where the in-process C-arm raises
:class:`DeviceLimitExceeded`; code that tells a limit refusal from a generator fault by type
treated the two rooms differently.

The reference drivers turn a wire fault ``device_limit`` — in a reply or an ``op.failed``
event — into :class:`DeviceLimitExceeded` naming the limit, for the C-arm as for the
injector. Whole stack on the in-memory cable (tests/wire/test_remote_drivers.py).
"""

from __future__ import annotations

import pytest

from drivers import DeviceFault, FluoroRequest, Technique, TomoRequest
from drivers.errors import LIMIT_FAULT, DeviceError, DeviceLimitExceeded
from drivers.remote._ops import OP_FAILED, Operations, failure
from hardware_sim.limits import GeneratorLimits
from tests.wire.test_remote_drivers import wired_room

ROOM_GENERATOR = GeneratorLimits(max_kv=125.0, max_mas=50.0)
ISSUE_EXPOSURE = Technique.from_mas(kv=150.0, mas=100.0, ma=500.0)
HOT_FLUORO = FluoroRequest(3.75, 4.0, Technique(140.0, 25.0, 8.0))


def test_a_technique_beyond_the_generators_limits_is_the_same_typed_error_as_in_process(
    run_virtual,
):
    async def go() -> None:
        async with wired_room() as w:
            w.sim.carm.limits = ROOM_GENERATOR
            with pytest.raises(DeviceLimitExceeded) as in_process:
                await w.sim.carm.set_technique(ISSUE_EXPOSURE)
            with pytest.raises(DeviceLimitExceeded) as remote:
                await w.carm.set_technique(ISSUE_EXPOSURE)
            assert remote.value.fault == in_process.value.fault == LIMIT_FAULT
            assert remote.value.limit == in_process.value.limit == "max_kv"
            assert remote.value.operation == "set_technique"
            # what was asked and what the device allows come across, not only the name
            assert (remote.value.value, remote.value.bound, remote.value.unit) == (
                in_process.value.value,
                in_process.value.bound,
                in_process.value.unit,
            )
            assert remote.value.value is not None
            assert (await w.carm.status()).technique is None

    run_virtual(go)


def test_fluoroscopy_and_tomosynthesis_refused_at_the_reply_are_typed(run_virtual):
    async def go() -> None:
        async with wired_room() as w:
            w.sim.carm.limits = ROOM_GENERATOR
            await w.carm.set_technique(Technique(70.0, 400.0, 100.0))
            with pytest.raises(DeviceLimitExceeded) as refused:
                await w.carm.fluoro(HOT_FLUORO)
            assert refused.value.limit == "fluoro_max_kv"
            sweep = TomoRequest((80.0,), Technique.from_mas(70.0, 200.0, 400.0))
            with pytest.raises(DeviceLimitExceeded, match="max_mas") as refused:
                await w.carm.tomosynthesis(sweep)
            assert refused.value.limit == "max_mas"
            status = await w.carm.status()
            assert status.fluoro_time_s == 0.0 and status.cumulative_reference_air_kerma_mgy == 0

    run_virtual(go)


def test_a_limit_met_while_the_operation_runs_ends_it_typed_with_the_limits_fields(
    run_virtual,
):
    async def go() -> None:
        async with wired_room() as w:
            # A C-arm that cannot check a request before accepting it (a contract-only one)
            # refuses when the run begins: the refusal arrives as an op.failed event.
            w.services["carm"]._check = lambda *_: None  # type: ignore[attr-defined]
            await w.carm.set_technique(Technique(75.0, 25.0, 8.0))
            with pytest.raises(DeviceLimitExceeded) as refused:
                await w.carm.fluoro(HOT_FLUORO)
            exc = refused.value
            assert exc.limit == "fluoro_max_kv" and exc.fault == LIMIT_FAULT
            assert (exc.value, exc.bound, exc.unit) == (140.0, 125.0, "kV")
            assert (await w.carm.status()).fluoro_time_s == 0.0

    run_virtual(go)


def test_an_op_failed_limit_event_resolves_the_waiter_with_the_typed_error(run_virtual):
    async def go() -> None:
        ops = Operations("carm")
        op_id, done = ops.begin("expose")
        fields = {
            "op_id": op_id,
            "error": "interlock",
            "fault": LIMIT_FAULT,
            "limit": "max_mas",
            "value": 800.0,
            "bound": 600.0,
            "unit": "mAs",
            "message": "max_mas: 800 mAs is beyond the limit of 600 mAs the device allows",
        }
        assert ops.on_event(OP_FAILED, fields)
        with pytest.raises(DeviceLimitExceeded) as refused:
            await done
        exc = refused.value
        assert (exc.device, exc.operation, exc.limit) == ("carm", "expose", "max_mas")
        assert (exc.value, exc.bound, exc.unit) == (800.0, 600.0, "mAs")
        assert exc.reason == fields["message"]

    run_virtual(go)


def test_a_limit_without_its_fields_is_still_named_from_the_message():
    exc = failure(
        "carm", "expose", {"error": "fault", "fault": LIMIT_FAULT, "message": "max_kv: 150 kV"}
    )
    assert isinstance(exc, DeviceLimitExceeded) and exc.limit == "max_kv"


def test_another_interlock_in_an_op_failed_event_is_a_device_fault_naming_it():
    exc = failure("carm", "fluoro", {"error": "interlock", "fault": "safe_state", "message": "x"})
    assert isinstance(exc, DeviceFault) and not isinstance(exc, DeviceLimitExceeded)
    assert exc.fault == "safe_state"
    generic = failure("carm", "fluoro", {"error": "internal", "message": "boom"})
    assert type(generic) is DeviceError
