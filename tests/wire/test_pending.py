"""Requests in flight (drivers/wire/_pending.py): the shared timeout timer and NAKs."""

from __future__ import annotations

import asyncio

from drivers.wire._pending import Miss, PendingCalls
from tests.virtual_time import virtual_time


@virtual_time
async def test_each_attempt_times_out_at_its_own_deadline() -> None:
    """One timer serves every call: when it fires it ends what is due and re-arms for the
    next deadline, also one set after it was armed."""
    loop = asyncio.get_running_loop()
    calls = PendingCalls()
    t0 = loop.time()
    late = calls.attempt(loop, 1, t0 + 0.3)
    early = calls.attempt(loop, 2, t0 + 0.1)  # earlier than the armed timer
    middle = calls.attempt(loop, 3, t0 + 0.2)
    ended: dict[int, float] = {}
    for seq, fut in ((2, early), (3, middle), (1, late)):
        assert await fut is Miss.TIMEOUT
        ended[seq] = loop.time() - t0
    assert ended == {2: 0.1, 3: 0.2, 1: 0.3}


@virtual_time
async def test_an_answered_call_does_not_time_out_and_is_forgotten() -> None:
    loop = asyncio.get_running_loop()
    calls = PendingCalls()
    seq = calls.next_seq()
    fut = calls.attempt(loop, seq, loop.time() + 0.1)
    fut.set_result(Miss.NAK)  # as the reader resolves it
    calls.end(seq)
    await asyncio.sleep(0.2)
    assert fut.result() is Miss.NAK and seq not in calls.futures


@virtual_time
async def test_a_nak_of_an_unknown_frame_resends_only_idempotent_requests() -> None:
    loop = asyncio.get_running_loop()
    calls = PendingCalls()
    idempotent = calls.attempt(loop, 10, loop.time() + 1.0)
    fire_once = calls.attempt(loop, 11, loop.time() + 1.0)
    calls.fire_once.add(11)
    calls.nak(None)
    assert idempotent.result() is Miss.NAK
    assert not fire_once.done()  # waits for its reply or its timeout, never re-sent
    calls.nak(11)  # a NAK naming it is an answer: the device did not take it
    assert fire_once.result() is Miss.NAK


@virtual_time
async def test_sequence_numbers_skip_those_still_waiting() -> None:
    loop = asyncio.get_running_loop()
    calls = PendingCalls()
    first = calls.next_seq()
    calls.attempt(loop, (first + 1) & 0xFFFF, loop.time() + 1.0)
    assert calls.next_seq() == (first + 2) & 0xFFFF
    assert calls.next_seq(unused=False) == (first + 3) & 0xFFFF


@virtual_time
async def test_after_stop_the_timer_ends_nothing() -> None:
    loop = asyncio.get_running_loop()
    calls = PendingCalls()
    fut = calls.attempt(loop, 1, loop.time() + 0.1)
    calls.stop()
    await asyncio.sleep(0.2)
    assert not fut.done()
    calls.fail_all(Miss.CLOSED)
    assert fut.result() is Miss.CLOSED
