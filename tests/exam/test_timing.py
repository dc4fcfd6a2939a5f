"""Time points and late films: the pure rules the capture handler applies."""

from __future__ import annotations

import pytest

from scheduler.exam.timing import (
    NoAnchor,
    held_reason,
    late_verdict,
    retry_in_window,
    status_after_capture,
    time_point,
)


def verdict(now: float, *, held: str | None = None, when_paused: str = "take_late", window=30.0):
    return late_verdict(
        deadline_s=100.0,
        now_s=now,
        tolerance_s=1.0,
        late_window_s=window,
        when_paused=when_paused,
        held=held,
    )


def test_a_time_point_is_the_injection_start_plus_at():
    assert time_point(5.5, 60.0) == 65.5
    with pytest.raises(NoAnchor):
        time_point(None, 60.0)


def test_on_time_and_within_tolerance_are_taken_as_they_are():
    assert verdict(99.0).action == "take"
    assert verdict(100.0).action == "take"
    taken = verdict(100.9)
    assert taken.action == "take" and taken.detail == "" and not taken.late_window


def test_slow_preparation_past_the_tolerance_misses_the_film():
    v = verdict(101.5)
    assert v.action == "miss"
    assert v.detail == "preparation ended 1.5 s after the planned time (tolerance 1 s)"


def test_a_film_held_by_a_pause_is_taken_late_inside_its_late_window():
    v = verdict(115.0, held="fell due while the exam was paused")
    assert v.action == "take" and v.late_window
    assert v.detail == "taken 15.0 s late: fell due while the exam was paused"


def test_a_held_film_inside_its_tolerance_needs_no_late_window():
    v = verdict(100.5, held="fell due while the exam was paused")
    assert v.action == "take" and not v.late_window


def test_a_held_film_past_its_late_window_or_with_policy_miss_is_missed():
    late = verdict(131.0, held="fell due while the exam was paused")
    assert late.action == "miss"
    assert "31.0 s late; policy take_late, late window 30 s" in late.detail
    policy = verdict(100.5, held="fell due while the exam was paused", when_paused="miss")
    assert policy.action == "miss" and "policy miss" in policy.detail


def test_why_a_film_is_held():
    assert held_reason(100.0, 3.0, None) == "fell due while the exam was paused"
    assert held_reason(100.0, 0.0, 150.0) == (
        "fell due while the controlling process was down (restart)"
    )
    assert held_reason(200.0, 0.0, 150.0) is None
    assert held_reason(100.0, 0.0, None) is None


def test_retries_stay_inside_the_window():
    assert retry_in_window(100.5, 100.0, 1.0)
    assert not retry_in_window(101.5, 100.0, 1.0)
    assert retry_in_window(1e9, None, 1.0)  # untimed: no window


def test_status_after_the_capture():
    assert status_after_capture(None, 1.0, None, False) == "done"
    assert status_after_capture(0.5, 1.0, None, False) == "done"
    assert status_after_capture(2.0, 1.0, None, False) == "late"
    # taken late on purpose inside the late window: done, not late
    assert status_after_capture(15.0, 1.0, 30.0, True) == "done"
    assert status_after_capture(15.0, 1.0, 30.0, False) == "late"
