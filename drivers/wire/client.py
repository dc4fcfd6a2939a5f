"""Host end of the wire protocol over one link: ``WireClient`` (docs/wire-protocol.md).

One client per device. A background supervisor task opens the link (again and again, with
backoff, after it drops) and runs the reader; a ticker task sends the host's heartbeats and
watches the device's. ``call`` sends a REQUEST and waits for the REPLY with the same ``seq``
(the requests in flight and their shared timeout timer: :mod:`._pending`). A link that offers
``set_fast_receiver`` (``SerialLink`` on a tty, ``FdLink``) hands each freshly read chunk to
the client inside its reader callback: a chunk that is exactly one REPLY for a waiting call
resolves it there (``parse_reply``), one task switch earlier; everything else goes to the
reader task as before, in stream order. A link with ``wait_reply``
(``serial://...?reply_wait_ms=N``) may take the reply in ``poll(2)`` right after the write,
without the event loop; the client then lets the loop run once per ``LOOP_SHARE_S`` of such
calls (decision 0009).

Time: every link-level duration in this module (reply timeout, heartbeat period and loss
bound, reconnect backoff, bulk idle) is a *wall-clock* fact of the cable; it is multiplied by
``clock.time_scale`` before waiting on the loop, so a rehearsal on a ``ScaledTimeEventLoop``
keeps the cable's real timing. Device timestamps (``t_s`` fields) are mapped onto the host's
loop clock by ``to_host_time`` (the two clocks are assumed to run at the same rate, as they do
when the device and host both run real time or both run at the same scale).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Final

from ..clock import Clock
from ..errors import (
    ControlRefused,
    DeviceError,
    DeviceLost,
    LinkSecurityError,
)
from ..links._base import Link, LinkError
from ._bulkrx import BULK_IDLE_S, BulkReceiver
from ._fast import FastDecoder, encode_request, parse_reply
from ._hostsession import HostSecurity, SecurityCallback, SecurityStats
from ._pending import Miss, PendingCalls, no_reply_error, reply_error
from ._seqwindow import SeqWindow
from ._timesync import OffsetEstimator
from .codec import (
    HEARTBEAT_PERIOD_S,
    HEARTBEAT_TIMEOUT_S,
    MAX_PAYLOAD,
    BulkChunk,
    DecodeError,
    Event,
    Fields,
    Flags,
    Frame,
    FrameError,
    Heartbeat,
    MsgType,
    Nak,
    NodeState,
    Reply,
    Scalar,
    Status,
    ack,
    encode_frame,
    heartbeat,
    nak_for,
)
from .keys import RoomKey
from .liveness import Liveness
from .session import Role, Verdict, new_host_id

log = logging.getLogger(__name__)

EventCallback = Callable[[str, Mapping[str, Scalar], float], None]
"""``(name, fields, host_time_s)``; host time is the device's ``t_s`` mapped, else arrival."""
LinkStateCallback = Callable[[bool, str], None]
"""``(up, detail)``: heartbeat seen / lost, link dropped, device restarted (down then up)."""
GapCallback = Callable[[int, int], None]
"""``(first_missing_seq, count)``: events were lost; the driver should query ``status``."""

DEFAULT_REPLY_TIMEOUT_S: Final = 0.25  # §2.3: 100 ms + wire time; default for TCP/USB/115200 Bd
DEFAULT_RETRIES: Final = 3  # §2.2: idempotent requests are re-sent at most 3 times
RECONNECT_MIN_S: Final = 0.05
RECONNECT_MAX_S: Final = 1.0
NAK_INTERVAL_S: Final = 0.02  # §2.2: at most one NAK per 20 ms
HANDSHAKE_TIMEOUT_S: Final = 0.5  # each handshake reply (two short frames: ms on any link)
RESTART_SLACK_MS: Final = 250  # uptime may lag the host's view of elapsed time by this much
# Replies taken by ``Link.wait_reply`` never pass through the event loop: a driver calling
# back to back would keep every other task (heartbeats, watchdogs, the scheduler) waiting.
# After this much wall time without the loop, a call lets it run once (one iteration, about
# 20 µs: 0.4 % of the time). Well under the 20 ms a single reply wait may hold the loop.
LOOP_SHARE_S: Final = 0.005
_EMPTY: Final[Fields] = {}


@dataclass(slots=True)
class WireStats:
    """Counters for diagnostics (link captures are not always at hand)."""

    requests: int = 0
    retries: int = 0
    timeouts: int = 0
    naks_received: int = 0
    naks_sent: int = 0
    decode_errors: int = 0
    garbage_bytes: int = 0
    late_replies: int = 0
    foreign_frames: int = 0
    events: int = 0
    duplicate_events: int = 0
    missed_events: int = 0
    links_opened: int = 0
    restarts: int = 0
    bulk_resend_requests: int = 0


class WireClient:
    """The host's endpoint for one device on one link. See the module docstring.

    ``link_factory`` returns a new, unopened :class:`Link` for each (re)connection.
    """

    def __init__(
        self,
        link_factory: Callable[[], Link],
        *,
        device_id: int,
        name: str,
        clock: Clock,
        key: RoomKey,
        role: Role = Role.CONTROL,
        host_id: str | None = None,
        reply_timeout_s: float = DEFAULT_REPLY_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        heartbeat_period_s: float = HEARTBEAT_PERIOD_S,
        heartbeat_timeout_s: float = HEARTBEAT_TIMEOUT_S,
        reconnect_min_s: float = RECONNECT_MIN_S,
        reconnect_max_s: float = RECONNECT_MAX_S,
        bulk_idle_s: float = BULK_IDLE_S,
        max_payload: int = MAX_PAYLOAD,
        sync_clock: bool = True,
    ) -> None:
        if not 1 <= device_id <= 255:
            raise ValueError(f"{name}: wire device id must be 1-255, got {device_id}")
        self.name = name
        self.device_id = device_id
        self.stats = WireStats()
        self._sec = HostSecurity(key, device_id, role, host_id or new_host_id(), name)
        self._hs_pending: dict[int, asyncio.Future[tuple[Status, Fields, bool]]] = {}
        self._fatal: LinkSecurityError | None = None
        self._refusal: ControlRefused | None = None
        self._factory = link_factory
        self._clock = clock
        self._scale = clock.time_scale
        self._reply_timeout_s = reply_timeout_s
        self._tries = 1 + retries
        self._reconnect = (reconnect_min_s, reconnect_max_s)
        self._max_payload = max_payload
        self._sync_on_connect = sync_clock

        self._loop: asyncio.AbstractEventLoop | None = None
        self._link: Link | None = None
        self._link_url = ""
        self._up = False
        self._up_event = asyncio.Event()
        self._down_detail = "not connected"
        self._drop_detail: str | None = None
        self._closed = False
        self._supervisor: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._aux: set[asyncio.Task[None]] = set()
        self._heard_this_link = False
        self._restart_note = ""

        self._calls = PendingCalls()
        self._pending = self._calls.futures  # the reader resolves replies here
        self._loop_seen = 0.0  # wall time this client last let the event loop run
        self._decoder: FastDecoder | None = None  # the reader's, while it runs
        self._rx_busy = False  # the reader task is between a read and the end of its frames
        self._hb_seq = 0
        self._started = clock.now()
        self._live = Liveness(
            period_s=heartbeat_period_s,
            timeout_s=heartbeat_timeout_s,
            time_scale=self._scale,
            send=self._beat,
            may_send=lambda: self._up and self._link is not None,
            watching=lambda: self._up,
            on_lost=self._device_silent,
            on_period=self._on_period,
        )
        self._last_nak = -1e18

        self._device_state: NodeState | None = None
        self._uptime_ms: int | None = None
        self._uptime_at = 0.0
        self._events = SeqWindow()
        self._sync = OffsetEstimator()

        self._bulkrx = BulkReceiver(
            name, device_id, self._scale, bulk_idle_s, self.call, self._count_resend
        )

        self._event_cbs: list[EventCallback] = []
        self._state_cbs: list[LinkStateCallback] = []
        self._gap_cbs: list[GapCallback] = []

    # --- state ------------------------------------------------------------------------------

    @property
    def link_url(self) -> str:
        return self._link_url

    @property
    def is_up(self) -> bool:
        """True between a device heartbeat and the next loss (silence, link drop, close)."""
        return self._up

    @property
    def security(self) -> SecurityStats:
        """Frames dropped by the session layer (unauthenticated, forged, replayed...)."""
        return self._sec.stats

    @property
    def role(self) -> Role:
        return self._sec.role

    @property
    def device_state(self) -> NodeState | None:
        """The state in the device's last heartbeat (``SAFE`` after it lost the host)."""
        return self._device_state

    @property
    def device_uptime_ms(self) -> int | None:
        return self._uptime_ms

    @property
    def clock_uncertainty_s(self) -> float:
        """Bound on the error of :meth:`to_host_time` (half the best round trip; inf if none)."""
        return self._sync.uncertainty_s

    def clock_sync(self) -> tuple[float, float]:
        """The device-clock offset's error bound now (its best sample's half round trip, grown
        by the drift allowance since) and that sample's age, both in wall seconds (inf, inf
        while no request/reply pair is known)."""
        now = self._loop.time() if self._loop is not None else 0.0
        scale = self._scale
        return self._sync.uncertainty_at(now) / scale, self._sync.age_s(now) / scale

    def to_device_time(self, host_time_s: float, *, not_before: bool = False) -> float:
        """Device clock time of a host loop time (for ``expose`` ``at_t_s``).

        ``not_before``: the device time that is certainly not before ``host_time_s`` (the
        offset's current error bound added), so a device event there happens no earlier
        than the host meant, within the bound."""
        if not not_before:
            return self._sync.to_device(host_time_s)
        now = self._loop.time() if self._loop is not None else 0.0
        bound = self._sync.uncertainty_at(now)
        return self._sync.to_device(host_time_s + (0.0 if bound == float("inf") else bound))

    def to_host_time(self, device_time_s: float) -> float:
        """Host loop time of a device timestamp (``t_s``, ``*_t_s`` fields)."""
        return self._sync.to_host(device_time_s)

    # --- listeners ------------------------------------------------------------------------

    def subscribe(self, callback: EventCallback) -> Callable[[], None]:
        """Receive device events; returns the unsubscribe function."""
        return _register(self._event_cbs, callback)

    def on_link_state(self, callback: LinkStateCallback) -> Callable[[], None]:
        return _register(self._state_cbs, callback)

    def on_gap(self, callback: GapCallback) -> Callable[[], None]:
        return _register(self._gap_cbs, callback)

    def on_security(self, callback: SecurityCallback) -> Callable[[], None]:
        """``(kind, count, detail)`` for frames the session layer dropped (coalesced: at most
        one report per kind per second)."""
        return self._sec.subscribe(callback)

    # --- lifecycle ------------------------------------------------------------------------

    async def connect(self, timeout_s: float = 5.0) -> None:
        """Open the link and an authenticated session (``timeout_s`` wall in all).

        From here on the link is kept open in the background (a dropped link is reopened and
        a new session made). The client is closed on failure: :class:`ProtocolMismatch` (an old
        device), :class:`AuthenticationFailed` (not the room's key) at once;
        :class:`ControlRefused` when another host still held control at the timeout;
        :class:`DeviceLost` otherwise (the last link error, or silence).
        """
        if self._closed:
            raise DeviceLost(self.name, "connect", "client closed", link=self._link_url)
        if self._supervisor is None:
            self._loop = loop = asyncio.get_running_loop()
            self._supervisor = loop.create_task(self._supervise(), name=f"wire {self.name} link")
            self._live.start(f"wire {self.name} heartbeat")
        try:
            async with asyncio.timeout(timeout_s * self._scale):
                await self._up_event.wait()
        except TimeoutError:
            detail = self._down_detail
            refusal = self._refusal
            await self.close()
            if refusal is not None:
                raise refusal from None
            raise DeviceLost(
                self.name,
                "connect",
                f"no heartbeat within {timeout_s:g} s ({detail})",
                link=self._link_url,
            ) from None
        if self._fatal is not None:
            fatal = self._fatal
            await self.close()
            raise fatal
        if self._sync_on_connect:
            await self.sync_clock()

    async def sync_clock(self, exchanges: int = 4) -> None:
        """A few ``link.ping`` round trips to pin the device clock offset down.

        Any reply carries ``t_s``, so a device without ``link.ping`` (UNKNOWN_COMMAND) works too.
        """
        for _ in range(exchanges):
            try:
                await self.call("link.ping")
            except DeviceLost:
                raise
            except DeviceError:
                pass

    async def close(self) -> None:
        """Give control back, stop the background tasks, close the link, fail what is pending.
        Idempotent."""
        if self._closed:
            return
        if self._up and self._sec.role is Role.CONTROL:
            # A deliberate end: the device frees the lease now instead of entering SAFE when
            # the heartbeats stop.
            with contextlib.suppress(DeviceError):
                await self.call("link.release", timeout_s=0.1)
        self._closed = True
        self._live.stop_watching()
        self._calls.stop()
        tasks = [t for t in (self._supervisor, self._live.ticker, self._reader, *self._aux) if t]
        # Cancel until they are gone: Python 3.11's asyncio.wait_for (used inside aiomqtt's
        # publish) can swallow a cancellation that races with its inner future's result.
        pending = set(tasks)
        while pending:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=0.05 * self._scale)
        link, self._link = self._link, None
        if link is not None:
            await link.close()
        self._up = False
        self._up_event.clear()
        self._down_detail = "client closed"
        self._fail_pending(Miss.CLOSED)

    # --- requests -------------------------------------------------------------------------

    async def call(
        self,
        command: str,
        fields: Mapping[str, Scalar] | None = None,
        *,
        fire_once: bool = False,
        timeout_s: float | None = None,
    ) -> dict[str, Scalar]:
        """Send ``command`` and return the OK reply's fields (including the device's ``t_s``).

        ``timeout_s`` (wall) bounds each attempt (default 250 ms). Idempotent commands are
        re-sent with the same ``seq`` after a NAK or a timeout, at most ``retries`` times, then
        :class:`DeviceTimeout`. ``fire_once`` commands are sent exactly once; if the outcome is
        not known (timeout, NAK, link lost) :class:`AmbiguousCommand` is raised.
        Error replies: BAD_STATE → :class:`DeviceStateError`; FAULT, INTERLOCK →
        :class:`DeviceFault`; BUSY → :class:`DeviceBusy`; BAD_ARG, UNKNOWN_COMMAND →
        :class:`CommandRejected`. No link or no heartbeat → :class:`DeviceLost` at once.
        """
        link = self._link
        loop = self._loop
        if not self._up or link is None or loop is None:
            raise DeviceLost(self.name, command, self._down_detail, link=self._link_url)
        calls = self._calls
        seq = calls.next_seq()
        session = self._sec.session
        if session is None:
            raise DeviceLost(self.name, command, "no session", link=self._link_url)
        args = _EMPTY if fields is None else fields
        data = encode_request(seq, self.device_id, command, args, session.seal)
        wait_s = self._reply_timeout_s if timeout_s is None else timeout_s
        per_try = wait_s * self._scale
        tries = 1 if fire_once else self._tries
        if fire_once:
            calls.fire_once.add(seq)
        self.stats.requests += 1
        attempt = 0
        sent = first_sent = loop.time()
        try:
            while True:
                attempt += 1
                if attempt > 1:
                    sent = loop.time()
                    # Same seq (the device answers it from its cache), fresh counter: the
                    # device's replay window drops a byte-identical copy.
                    data = encode_request(seq, self.device_id, command, args, session.seal)
                fut = calls.attempt(loop, seq, sent + per_try)
                try:
                    await link.write(data)
                    if not fut.done():
                        link.wait_reply(fut.done)
                    if not fut.done():
                        outcome = await fut
                        self._loop_seen = time.monotonic()
                    else:
                        outcome = fut.result()
                        wall = time.monotonic()
                        if wall - self._loop_seen >= LOOP_SHARE_S:
                            self._loop_seen = wall
                            await asyncio.sleep(0)
                except LinkError as exc:
                    self._link_failed(link, exc)
                    outcome = Miss.LINK_LOST
                if type(outcome) is tuple:
                    status, result, received = outcome
                    break
                assert isinstance(outcome, Miss)
                if outcome is Miss.TIMEOUT:
                    self.stats.timeouts += 1
                if fire_once or outcome is Miss.LINK_LOST or outcome is Miss.CLOSED:
                    raise self._no_reply(command, seq, outcome, fire_once, first_sent, attempt)
                if attempt >= tries:
                    raise self._no_reply(command, seq, outcome, fire_once, first_sent, attempt)
                link = self._link
                if not self._up or link is None:
                    raise self._no_reply(
                        command, seq, Miss.LINK_LOST, fire_once, first_sent, attempt
                    )
                self.stats.retries += 1
        finally:
            calls.end(seq)
        t = result.get("t_s")
        # Karn's rule: a reply to a re-sent request may answer either copy; no clock sample.
        if attempt == 1 and (type(t) is float or type(t) is int):
            self._sync.exchange(sent, received, t)
        if status is Status.OK:
            return result if isinstance(result, dict) else dict(result)
        raise reply_error(self.name, command, Reply(status, result), self._link_url)

    def _no_reply(
        self, command: str, seq: int, why: Miss, fire_once: bool, since: float, attempts: int
    ) -> DeviceError:
        assert self._loop is not None
        return no_reply_error(
            self.name,
            command,
            seq,
            why,
            fire_once=fire_once,
            waited_s=(self._loop.time() - since) / self._scale,
            attempts=attempts,
            down_detail=self._down_detail,
            link=self._link_url,
        )

    # --- bulk -------------------------------------------------------------------------------

    async def bulk(self, transfer_id: int, *, timeout_s: float = 5.0) -> bytes:
        """The image of BULK transfer ``transfer_id`` (wall ``timeout_s`` in all).

        The data may already have arrived (it is kept for the last 16 transfers). Chunks missing
        after ``bulk_idle_s`` without progress are asked for again with ``link.bulk_resend``.
        """
        if not 0 <= transfer_id <= 0xFFFF:
            raise ValueError(f"transfer id must be 0-65535, got {transfer_id}")
        loop = self._loop
        if loop is None or self._closed:
            detail = self._down_detail
            raise DeviceLost(self.name, f"bulk {transfer_id}", detail, link=self._link_url)
        self._bulkrx.link_url = self._link_url
        return await self._bulkrx.fetch(transfer_id, timeout_s, loop)

    # --- link supervision -------------------------------------------------------------------

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        low, high = self._reconnect
        backoff = low
        first = True
        while True:
            if not first:
                await asyncio.sleep(backoff * self._scale)
                backoff = min(backoff * 2, high)
            first = False
            link = self._factory()
            self._link_url = link.url
            try:
                await link.open()
            except (LinkError, OSError) as exc:
                self._down_detail = f"cannot open link: {_describe(exc)}"
                continue
            self.stats.links_opened += 1
            self._drop_detail = None
            self._heard_this_link = False
            self._live.last_rx = loop.time()
            self._link = link
            reader = self._reader = loop.create_task(
                self._read_loop(link), name=f"wire {self.name} reader"
            )
            if not await self._open_session(link, reader):
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
                self._link = self._reader = None
                await link.close()
                if self._fatal is not None:
                    return
                continue
            try:
                await asyncio.wait((reader,))
            finally:
                if not reader.done():  # we are being cancelled (close)
                    reader.cancel()
            self._link = None
            self._reader = None
            detail = self._drop_detail or self._reader_end(reader)
            await link.close()
            if self._heard_this_link:
                backoff = low
            self._go_down(f"link dropped: {detail}")

    async def _open_session(self, link: Link, reader: asyncio.Task[None]) -> bool:
        """The handshake on a fresh link; True when the session is up."""

        async def exchange(
            command: str, fields: Mapping[str, Scalar], sealed: bool
        ) -> tuple[Status, Fields]:
            return await self._exchange(link, reader, command, fields, sealed)

        try:
            reply = await self._sec.open(exchange, link.url)
        except LinkSecurityError as exc:
            self._down_detail = exc.detail
            if isinstance(exc, ControlRefused):
                self._refusal = exc  # may free up: keep trying until connect's timeout
            else:
                self._fatal = exc
                self._up_event.set()  # wake connect(): this will not fix itself
            return False
        except DeviceError as exc:
            self._down_detail = exc.detail
            return False
        self._refusal = None
        state = reply.get("state")
        if isinstance(state, str) and state in NodeState.__members__:
            self._device_state = NodeState[state]
        uptime = reply.get("uptime_ms")
        if type(uptime) is int and self._loop is not None:
            self._check_uptime(uptime & 0xFFFFFFFF, self._loop.time())  # a restart, at once
        self._go_up(self._device_state or NodeState.READY)
        return True

    async def _exchange(
        self,
        link: Link,
        reader: asyncio.Task[None],
        command: str,
        fields: Mapping[str, Scalar],
        sealed: bool,
    ) -> tuple[Status, Fields]:
        loop = asyncio.get_running_loop()
        seq = self._calls.next_seq(unused=False)
        fut: asyncio.Future[tuple[Status, Fields, bool]] = loop.create_future()
        self._hs_pending[seq] = fut
        try:
            # Handshake requests go plain (the device has no session for us yet); ``sealed``
            # says the reply must come authenticated (link.auth's, sealed with the new keys).
            await link.write(encode_request(seq, self.device_id, command, fields))
            done, _ = await asyncio.wait(
                (fut, reader),
                timeout=HANDSHAKE_TIMEOUT_S * self._scale,
                return_when=asyncio.FIRST_COMPLETED,
            )
        except LinkError as exc:
            raise DeviceLost(self.name, command, exc.detail, link=link.url) from None
        finally:
            del self._hs_pending[seq]
        if fut not in done:
            self._sec.check_version()
            raise DeviceLost(self.name, command, "no reply to the session handshake", link=link.url)
        status, reply, authenticated = fut.result()
        if sealed and not authenticated and status is Status.OK:
            raise DeviceLost(self.name, command, "unauthenticated reply", link=link.url)
        return status, reply

    def _reader_end(self, reader: asyncio.Task[None]) -> str:
        if reader.cancelled():
            return "reader stopped"
        exc = reader.exception()
        if isinstance(exc, LinkError):
            return exc.detail
        if exc is not None:
            log.error("%s: wire reader failed", self.name, exc_info=exc)
            return f"internal error: {exc!r}"
        return "reader ended"

    def _link_failed(self, link: Link, exc: LinkError) -> None:
        """A write failed: end this link's reader so the supervisor reconnects."""
        if link is not self._link:
            return
        if self._drop_detail is None:
            self._drop_detail = exc.detail
        reader = self._reader
        if reader is not None and not reader.done() and reader is not asyncio.current_task():
            reader.cancel()
        if self._up:
            self._go_down(f"link dropped: {exc.detail}")

    async def _write_quiet(self, link: Link, data: bytes) -> None:
        try:
            await link.write(data)
        except LinkError as exc:
            self._link_failed(link, exc)
            if asyncio.current_task() is self._reader:
                raise

    def _go_up(self, state: NodeState) -> None:
        self._up = True
        self._heard_this_link = True
        self._down_detail = ""
        self._up_event.set()
        detail = f"heartbeat from {self.name} (state {state.name})"
        if self._restart_note:
            detail, self._restart_note = f"{detail}; {self._restart_note}", ""
        self._notify_state(True, detail)

    def _go_down(self, detail: str) -> None:
        self._down_detail = detail
        if not self._up:
            return
        self._up = False
        self._up_event.clear()
        self._fail_pending(Miss.LINK_LOST)
        self._notify_state(False, detail)

    def _fail_pending(self, why: Miss) -> None:
        self._calls.fail_all(why)
        self._bulkrx.link_url = self._link_url
        self._bulkrx.fail_waiting(self._down_detail)

    async def _beat(self, now: float) -> None:
        link, session = self._link, self._sec.session
        if link is None or session is None:
            return
        self._hb_seq = (self._hb_seq + 1) & 0xFFFF
        uptime_ms = int((now - self._started) / self._scale * 1000)
        frame = heartbeat(self._hb_seq, 0, NodeState.READY, self._live.period_ms, uptime_ms)
        await self._write_quiet(link, encode_frame(frame, session.seal))

    def _device_silent(self) -> None:
        detail = f"no valid frame from the device for {self._live.timeout_s:g} s (heartbeat lost)"
        self._go_down(detail)
        # The device may have lost our session (restart) or left it: reopen the link and make
        # a new one rather than wait on a session that may be gone.
        reader = self._reader
        if reader is not None and not reader.done():
            self._drop_detail = detail
            reader.cancel()

    def _wall(self, now: float | None = None) -> float:
        """Loop time in wall seconds (the loop may run scaled or virtual)."""
        if now is None:
            now = self._loop.time() if self._loop is not None else 0.0
        return now / self._scale

    def _count_resend(self) -> None:
        self.stats.bulk_resend_requests += 1

    def _on_period(self, now: float) -> None:
        self._bulkrx.expire(now)
        self._sec.flush(self._wall(now))

    # --- receiving --------------------------------------------------------------------------

    async def _read_loop(self, link: Link) -> None:
        loop = asyncio.get_running_loop()
        decoder = self._decoder = FastDecoder(self._max_payload)
        feed = decoder.feed
        pending = self._pending
        dev = self.device_id
        live = self._live
        sec = self._sec
        set_receiver = getattr(link, "set_fast_receiver", None)
        if set_receiver is not None:
            set_receiver(self._fast_receive)
        try:
            while True:
                self._rx_busy = False
                data = await link.read()
                self._rx_busy = True
                now = loop.time()
                for item in feed(data):
                    if isinstance(item, Frame):
                        msg = item.message
                        if item.device != dev and not (item.device == 0 and type(msg) is Nak):
                            self.stats.foreign_frames += 1
                            continue
                        session = sec.session
                        auth = item.auth
                        if session is None or auth is None:
                            self._unsealed(item)
                            continue
                        verdict = session.check(auth)
                        if verdict is not _OK:
                            sec.dropped(verdict, _what(item), self._wall(now))
                            continue
                        live.last_rx = now
                        if type(msg) is Reply:
                            fut = pending.get(item.seq)
                            if fut is not None and not fut.done():
                                fut.set_result((msg.status, msg.fields, now))
                            elif (hs := self._hs_pending.get(item.seq)) and not hs.done():
                                hs.set_result((msg.status, msg.fields, True))
                            else:
                                self.stats.late_replies += 1
                        else:
                            await self._on_frame(link, item, now)
                    else:
                        await self._on_decode_error(link, item, now)
        finally:
            self._rx_busy = False
            self._decoder = None
            if set_receiver is not None:
                set_receiver(None)

    def _unsealed(self, frame: Frame) -> None:
        """A frame without a trailer (or before the session): only a handshake reply counts."""
        msg = frame.message
        if frame.auth is None and type(msg) is Reply:
            hs = self._hs_pending.get(frame.seq)
            if hs is not None and not hs.done():
                hs.set_result((msg.status, msg.fields, False))
                return
        if self._sec.session is not None:
            self._sec.dropped(Verdict.UNAUTHENTICATED, _what(frame), self._wall())

    def _fast_receive(self, data: bytes) -> bool:
        """The link's reader callback offers fresh bytes: take them if they are exactly one
        REPLY to a waiting call and the reader task holds nothing older (stream order)."""
        decoder = self._decoder
        if self._rx_busy or decoder is None or not decoder.idle:
            return False
        parsed = parse_reply(data, self._max_payload)
        if parsed is None or parsed[1] != self.device_id:
            return False
        fut = self._pending.get(parsed[0])
        if fut is None or fut.done():
            return False  # a late reply: the reader counts it
        loop, session, auth = self._loop, self._sec.session, parsed[5]
        if loop is None or session is None or auth is None or session.check(auth) is not _OK:
            return False  # the reader checks it again and counts what is wrong
        self._live.last_rx = now = loop.time()
        fut.set_result((parsed[3], parsed[4], now))
        return True

    async def _on_frame(self, link: Link, frame: Frame, now: float) -> None:
        msg = frame.message
        if isinstance(msg, Heartbeat):
            self._on_heartbeat(msg, now)
        elif isinstance(msg, Event):
            if frame.flags & Flags.ACK_REQUESTED and (session := self._sec.session):
                # ACK every copy: the device re-sends because our previous ACK may be lost.
                await self._write_quiet(
                    link, encode_frame(ack(frame.seq, frame.device, MsgType.EVENT), session.seal)
                )
            self._on_event(frame.seq, msg, now)
        elif isinstance(msg, Nak):
            self._on_nak(frame.seq, msg)
        elif isinstance(msg, BulkChunk):
            self._bulkrx.on_chunk(frame, msg, now)
        # ACK (we request none) and REQUEST (devices send none) are ignored.

    async def _on_decode_error(self, link: Link, error: DecodeError, now: float) -> None:
        if error.kind is FrameError.GARBAGE:
            self.stats.garbage_bytes += error.size
            return
        self.stats.decode_errors += 1
        if error.kind is FrameError.BAD_VERSION and error.header is not None:
            self._sec.peer_version = error.header.version
        if now - self._last_nak < NAK_INTERVAL_S * self._scale:
            return
        frame = nak_for(error)
        if frame is not None:
            self._last_nak = now
            self.stats.naks_sent += 1
            session = self._sec.session
            await self._write_quiet(link, encode_frame(frame, session.seal if session else None))

    def _on_heartbeat(self, hb: Heartbeat, now: float) -> None:
        self._device_state = hb.state
        self._check_uptime(hb.uptime_ms, now)
        if not self._up:
            self._go_up(hb.state)

    def _check_uptime(self, uptime_ms: int, now: float) -> None:
        prev, prev_at = self._uptime_ms, self._uptime_at
        self._uptime_ms, self._uptime_at = uptime_ms, now
        if prev is not None:
            # Uptime must have advanced by about the wall time since the last heartbeat (across
            # link outages too): less means the device restarted, even if its new uptime is
            # already above the old one.
            elapsed_ms = (now - prev_at) / self._scale * 1000.0
            ahead = ((uptime_ms - int(prev + elapsed_ms) + 0x80000000) & 0xFFFFFFFF) - 0x80000000
            if ahead < -(RESTART_SLACK_MS + 0.1 * elapsed_ms):
                self._restarted(prev, uptime_ms)

    def _restarted(self, before_ms: int, now_ms: int) -> None:
        self.stats.restarts += 1
        self._events.reset()
        self._sync.reset()
        detail = f"device restarted (uptime {before_ms} ms, now {now_ms} ms): its state is unknown"
        if self._up:
            self._notify_state(False, detail)
            self._notify_state(True, detail)
        else:
            self._restart_note = detail  # told with the coming "up"
        self._spawn(self._resync())

    async def _resync(self) -> None:
        with contextlib.suppress(DeviceError):
            await self.sync_clock()

    def _on_event(self, seq: int, ev: Event, now: float) -> None:
        new, missed = self._events.accept(seq)
        if missed:
            self.stats.missed_events += missed
            first = (seq - missed) & 0xFFFF
            for gap_cb in tuple(self._gap_cbs):
                _safe_call(gap_cb, first, missed)
        if not new:
            self.stats.duplicate_events += 1
            return
        self.stats.events += 1
        host_t = now
        t = ev.fields.get("t_s")
        if type(t) is float or type(t) is int:
            self._sync.rough(now, t)
            host_t = min(now, self._sync.to_host(t))
        for cb in tuple(self._event_cbs):
            _safe_call(cb, ev.name, ev.fields, host_t)

    def _on_nak(self, seq: int, nk: Nak) -> None:
        self.stats.naks_received += 1
        if nk.ref_type is MsgType.REQUEST:
            self._calls.nak(seq)
        elif nk.ref_type is None:
            self._calls.nak(None)

    # --- helpers ----------------------------------------------------------------------------

    def _notify_state(self, up: bool, detail: str) -> None:
        for cb in tuple(self._state_cbs):
            _safe_call(cb, up, detail)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._aux.add(task)
        task.add_done_callback(self._aux.discard)


_OK: Final = Verdict.OK


def _what(frame: Frame) -> str:
    return f"{frame.msg_type.name} seq {frame.seq}"


def _register(callbacks: list[Any], callback: Any) -> Callable[[], None]:
    callbacks.append(callback)

    def remove() -> None:
        with contextlib.suppress(ValueError):
            callbacks.remove(callback)

    return remove


def _safe_call(cb: Callable[..., None], *args: Any) -> None:
    try:
        cb(*args)
    except Exception:
        # A listener's bug must not stop the reader (and with it every reply).
        log.exception("wire listener %r failed", cb)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, LinkError):
        return exc.detail
    return f"{type(exc).__name__}: {exc}"
