import pytest

from scheduler.state import TRANSITIONS, IllegalTransition, RunState, StateMachine


def test_a_run_goes_through_the_table_and_announces_every_change():
    seen = []
    m = StateMachine(seen.append)
    for target in (RunState.PREPARING, RunState.RUNNING, RunState.PAUSED, RunState.RUNNING):
        m.go(target, "x")
    m.go(RunState.COMPLETED)
    assert [(t.source, t.target) for t in seen] == [
        (RunState.IDLE, RunState.PREPARING),
        (RunState.PREPARING, RunState.RUNNING),
        (RunState.RUNNING, RunState.PAUSED),
        (RunState.PAUSED, RunState.RUNNING),
        (RunState.RUNNING, RunState.COMPLETED),
    ]


@pytest.mark.parametrize(
    ("path", "target", "reason"),
    [
        ((), RunState.RUNNING, "not been prepared"),
        ((RunState.PREPARING,), RunState.PAUSED, "only a running exam can be paused"),
        ((RunState.PREPARING, RunState.RUNNING, RunState.PAUSED), RunState.COMPLETED, "complete"),
        ((RunState.PREPARING, RunState.ABORTED), RunState.RUNNING, "already ended"),
    ],
)
def test_illegal_transitions_are_refused_with_a_reason(path, target, reason):
    m = StateMachine()
    for s in path:
        m.go(s)
    with pytest.raises(IllegalTransition, match=reason) as err:
        m.go(target)
    assert err.value.current is m.state


def test_terminal_states_have_no_way_out():
    for state in (RunState.COMPLETED, RunState.ABORTED, RunState.FAULTED):
        assert state.terminal and not TRANSITIONS[state]
