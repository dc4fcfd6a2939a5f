"""Value types survive the trip through flat wire fields, and bad fields are named."""

from __future__ import annotations

import pytest

from drivers import (
    FluoroRequest,
    FocalSpot,
    InjectionPhase,
    InjectionProgram,
    InjectorFault,
    InjectorState,
    InjectorStatus,
    PositionerPose,
    TablePosition,
    TableStatus,
    Technique,
    TomoRequest,
)
from drivers.remote._fields import (
    FieldError,
    fluoro_fields,
    fluoro_from,
    injector_status_fields,
    injector_status_from,
    pose_fields,
    pose_from,
    program_fields,
    program_from,
    table_status_fields,
    table_status_from,
    technique_fields,
    technique_from,
    tomo_fields,
    tomo_from,
)
from drivers.wire import decode_body, encode_frame, request
from drivers.wire.codec import Request

TECH = Technique(78.0, 400.0, 40.0, FocalSpot.SMALL, 3.0, 0.1)


def _through_codec(fields: dict) -> dict:
    """Encode as a REQUEST and decode again, as the link would."""
    wire = encode_frame(request(7, 1, "x", **fields))
    frame = decode_body(wire[1:-1])
    assert not hasattr(frame, "kind"), frame
    assert isinstance(frame.message, Request)  # type: ignore[union-attr]
    return dict(frame.message.args)  # type: ignore[union-attr]


def test_technique_pose_round_trip() -> None:
    assert technique_from(_through_codec(technique_fields(TECH))) == TECH
    pose = PositionerPose(-30.0, -15.0, 1150.0)
    assert pose_from(_through_codec(pose_fields(pose))) == pose


def test_fluoro_and_tomo_requests_round_trip() -> None:
    fr = FluoroRequest(7.5, 12.0, TECH)
    assert fluoro_from(_through_codec(fluoro_fields(fr))) == fr
    tr = TomoRequest((80.0, 90.0, 100.0), TECH, 30.0, 25)
    assert tomo_from(_through_codec(tomo_fields(tr))) == tr


def test_program_round_trip_keeps_phases_in_order() -> None:
    prog = InjectionProgram(
        (InjectionPhase(4.0, 50.0), InjectionPhase(2.0, 20.0, delay_s=5.0)), 2069.0, 0.5, 350.0
    )
    assert program_from(_through_codec(program_fields(prog))) == prog


def test_statuses_map_device_times_onto_the_host_clock() -> None:
    st = InjectorStatus(
        InjectorState.FAULTED, 12.5, 0.0, 900.0, 0, 100.0, 112.0, (InjectorFault.OCCLUSION,)
    )
    back = injector_status_from(_through_codec(injector_status_fields(st)), lambda t: t + 5.0)
    assert back.started_at_s == 105.0 and back.ended_at_s == 117.0
    assert back.faults == (InjectorFault.OCCLUSION,) and back.state is InjectorState.FAULTED
    ts = TableStatus(TablePosition(120.0, 0.0, 800.0, 0.0), False, 42.0, ("stall",))
    tback = table_status_from(_through_codec(table_status_fields(ts)), lambda t: t - 2.0)
    assert tback.position == ts.position and tback.motion_completed_at_s == 40.0
    assert tback.faults == ("stall",)


def test_missing_or_mistyped_field_is_named() -> None:
    fields = technique_fields(TECH)
    del fields["kv"]
    with pytest.raises(FieldError, match="'kv'"):
        technique_from(fields)
    with pytest.raises(FieldError, match="'ma'"):
        technique_from(technique_fields(TECH) | {"ma": "lots"})
    # out of range is the value type's own check, not silently accepted
    with pytest.raises(ValueError, match="kv"):
        technique_from(technique_fields(TECH) | {"kv": 400.0})
