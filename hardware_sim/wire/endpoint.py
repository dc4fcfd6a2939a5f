"""Device end of the wire protocol: ``DeviceEndpoint`` (docs/wire-protocol.md).

What a device's firmware does with its port: answer REQUESTs through a handler, keep the replies
to the last 32 requests (a repeated ``seq`` is answered from there, never executed twice), stamp
replies and events with the device clock (``t_s``), send heartbeats, re-send critical events
until ACK'd, keep bulk images for ``link.bulk_resend``, NAK damaged frames (at most one per
20 ms), and enter SAFE when the host has been silent for 1 s. A dropped link does not stop it:
it waits and reads again (the firmware keeps running; the host may come back).

Every frame after the handshake is authenticated (protocol version 2, §7): a host first opens
a session with ``link.hello``/``link.auth`` (the only requests answered without one), proving it
holds the room key; the endpoint drops and counts anything unauthenticated, forged, replayed or
from an unknown session (:class:`EndpointStats`). Only the session holding the control lease
(``hardware_sim.wire.sessions``) may send commands that change state; others get the read-only
ones (``status`` and the ``read_only`` commands given). In SAFE (the controller fell silent) the
fire-once commands (``expose``, ``fluoro``, ``tomo``, ``start``) are refused with INTERLOCK
until the host sends ``link.clear_safe``. What the device sends (heartbeats, events, images) goes
to every open session, sealed with each one's keys.

Built-in commands (names under the protocol's reserved ``link.`` prefix):
``link.ping`` (OK, for clock sync), ``link.clear_safe`` (leave SAFE), ``link.bulk_resend``
(``transfer_id``, ``first``, ``count``: re-send those chunks after the reply), ``link.release``
(end this session; a controller gives the lease back without the device entering SAFE).

The handler should be quick: requests are answered in order by one reader, and the protocol
wants a reply within 100 ms (long actions reply at once and report their end as an event).

Fault hooks for tests and the simulator: :meth:`inject_garbage`, :meth:`corrupt_next_frames`,
:meth:`drop_next_replies`, :meth:`drop_bulk_chunks`, :meth:`stall`.

All durations are wall seconds, multiplied by ``clock.time_scale`` to wait on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Final

from drivers.clock import Clock
from drivers.links import Link, LinkError
from drivers.wire import (
    DEFAULT_CHUNK_SIZE,
    HEARTBEAT_PERIOD_S,
    HEARTBEAT_TIMEOUT_S,
    MAX_PAYLOAD,
    Ack,
    BulkChunk,
    DecodeError,
    Event,
    FastDecoder,
    Flags,
    Frame,
    FrameError,
    MsgType,
    Nak,
    NodeState,
    Request,
    Scalar,
    Status,
    bulk_chunks,
    encode_frame,
    encode_reply,
    heartbeat,
    nak_for,
)
from drivers.wire.keys import RoomKey
from drivers.wire.liveness import Liveness
from drivers.wire.session import Session, Verdict

from .faults import FaultHooks
from .sessions import HANDSHAKE_COMMANDS, SessionTable

log = logging.getLogger(__name__)

Handler = Callable[[str, Mapping[str, Scalar]], Awaitable[tuple[Status, Mapping[str, Scalar]]]]
HostLostHook = Callable[[], Awaitable[None]]

REPLY_CACHE: Final = 32
NAK_INTERVAL_S: Final = 0.02
CRITICAL_RESEND_S: Final = 0.1
CRITICAL_RESENDS: Final = 10
BULK_KEEP_S: Final = 10.0
BULK_KEEP_BYTES: Final = 64 * 1024 * 1024
RELINK_S: Final = 0.05  # pause after the link dropped before reading again
RECENT_REPLY_S: Final = 0.3  # replies re-sent on a NAK that cannot say which frame was bad
_ALL: Final = 0xFFFFFFFF
#: The reference devices' fire-once commands: refused in SAFE (§2.5) whatever the host says.
FIRE_COMMANDS: Final = frozenset({"expose", "fluoro", "tomo", "start"})


@dataclass(slots=True)
class EndpointStats:
    requests: int = 0
    executed: int = 0  # handler calls (link.* commands and cache hits excluded)
    cache_hits: int = 0
    replies_dropped: int = 0
    replies_resent: int = 0
    naks_sent: int = 0
    naks_received: int = 0
    decode_errors: int = 0
    garbage_bytes: int = 0
    events: int = 0
    critical_resends: int = 0
    critical_unacked: int = 0
    bulk_transfers: int = 0
    bulk_chunks_resent: int = 0
    write_failures: int = 0
    link_drops: int = 0
    host_lost: int = 0
    # security (§7): frames dropped unread, commands refused
    unauthenticated: int = 0
    bad_tags: int = 0
    replays: int = 0
    unknown_sessions: int = 0
    handshake_failures: int = 0
    sessions_opened: int = 0
    refused_not_controller: int = 0
    refused_in_safe: int = 0


class DeviceEndpoint(FaultHooks):
    def __init__(
        self,
        link: Link,
        *,
        device_id: int,
        name: str,
        handler: Handler,
        clock: Clock,
        key: RoomKey,
        read_only: Collection[str] = ("status",),
        refused_in_safe: Collection[str] = FIRE_COMMANDS,
        on_host_lost: HostLostHook | None = None,
        heartbeat_period_s: float = HEARTBEAT_PERIOD_S,
        host_timeout_s: float = HEARTBEAT_TIMEOUT_S,
        max_payload: int = MAX_PAYLOAD,
        state: NodeState = NodeState.READY,
    ) -> None:
        if not 1 <= device_id <= 255:
            raise ValueError(f"{name}: wire device id must be 1-255, got {device_id}")
        self.link = link
        self.device_id = device_id
        self.name = name
        self.stats = EndpointStats()
        self._handler = handler
        self._clock = clock
        self._scale = clock.time_scale
        self._on_host_lost = on_host_lost
        self._max_payload = max_payload
        self._state = state
        self._safe = False
        self._booted = clock.now()
        self._sessions = SessionTable(key, device_id)
        self._read_only = frozenset(read_only)
        self._refused_in_safe = frozenset(refused_in_safe)
        self._live = Liveness(
            period_s=heartbeat_period_s,
            timeout_s=host_timeout_s,
            time_scale=self._scale,
            send=self._beat,
            may_send=lambda: not self._stalled,
            watching=lambda: self._sessions.controller is not None and not self._stalled,
            on_lost=self._host_silent,
            on_period=self._on_period,
        )
        self._last_nak = -1e18
        self._hb_seq = 0
        self._ev_seq = 0
        self._bulk_seq = 0
        self._tid = 0
        # (session, seq) -> (command, args, status, reply fields); insertion order = age. Kept
        # unsealed: a re-sent reply is sealed again with a fresh counter (the host's replay
        # window would drop a byte-identical copy).
        self._cache: OrderedDict[tuple[int, int], _Cached] = OrderedDict()
        self._recent: deque[tuple[float, Session, int]] = deque(maxlen=8)
        self._after_reply: list[tuple[Session, Frame]] = []
        self._unacked: dict[int, tuple[asyncio.Future[None], Frame]] = {}
        self._bulk: OrderedDict[int, tuple[float, list[Frame]]] = OrderedDict()
        self._bulk_bytes = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._serve_task: asyncio.Task[None] | None = None

        self._init_faults()

    # --- state ------------------------------------------------------------------------------

    @property
    def state(self) -> NodeState:
        """What the heartbeats say: SAFE from a host loss until ``link.clear_safe``."""
        return NodeState.SAFE if self._safe else self._state

    def set_state(self, state: NodeState) -> None:
        """The device's own state (READY, ACTIVE, FAULT); SAFE enters the safe state."""
        if state is NodeState.SAFE:
            self._safe = True
        else:
            self._state = state

    @property
    def safe(self) -> bool:
        return self._safe

    @property
    def host_connected(self) -> bool:
        """A host holds the control lease (its frames arrive within the loss bound)."""
        return self._sessions.controller is not None

    def controller_quiet_s(self) -> float:
        """Wall seconds since the control-lease holder's last authenticated frame (inf when no
        host holds the lease): what an armed timed exposure asks before it fires."""
        if self._sessions.controller is None:
            return float("inf")
        return (self._clock.now() - self._live.last_rx) / self._scale

    @property
    def sessions(self) -> int:
        """Open authenticated sessions (controller and observers)."""
        return len(self._sessions.sessions)

    @property
    def uptime_ms(self) -> int:
        """Wall milliseconds since this endpoint was made (the firmware booted)."""
        return int((self._clock.now() - self._booted) / self._scale * 1000) & 0xFFFFFFFF

    @property
    def pending_acks(self) -> int:
        """Critical events sent and not yet acknowledged."""
        return len(self._unacked)

    # --- running ----------------------------------------------------------------------------

    async def serve(self) -> None:
        """Serve the link until cancelled (or :meth:`close`)."""
        if self._serve_task is not None:
            raise RuntimeError(f"{self.name}: endpoint already serving")
        self._serve_task = asyncio.current_task()
        if not self.link.is_open:
            await self.link.open()
        self._live.start(f"{self.name} heartbeat")
        ticker = self._live.ticker
        assert ticker is not None
        self._tasks.add(ticker)
        try:
            await self._read_loop()
        finally:
            self._live.stop_watching()
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._tasks.clear()
            self._serve_task = None

    async def close(self) -> None:
        """Stop serving and close the link. Idempotent."""
        task = self._serve_task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self.link.close()

    async def send_event(
        self, name: str, fields: Mapping[str, Scalar] | None = None, *, critical: bool = False
    ) -> None:
        """Send an EVENT stamped with ``t_s`` (unless given). Never raises for a dead link.

        ``critical``: ACK_REQUESTED, re-sent every 100 ms (up to 10 times) until ACK'd.
        """
        self._ev_seq = seq = (self._ev_seq + 1) & 0xFFFF
        out = dict(fields) if fields else {}
        if "t_s" not in out:
            out["t_s"] = self._clock.now()
        flags = Flags.ACK_REQUESTED if critical else Flags.NONE
        frame = Frame(seq, self.device_id, Event(name, out), flags)
        self.stats.events += 1
        if critical:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._unacked[seq] = (fut, frame)
            await self._broadcast(frame, MsgType.EVENT)
            self._spawn(self._deliver(seq, frame, fut))
        else:
            await self._broadcast(frame, MsgType.EVENT)

    async def send_bulk(self, data: bytes, chunk_size: int = DEFAULT_CHUNK_SIZE) -> int:
        """Send ``data`` as one BULK transfer; returns its transfer id (kept 10 s for resend)."""
        tid = self._tid
        self._tid = (tid + 1) & 0xFFFF
        frames = bulk_chunks(tid, data, chunk_size, device=self.device_id, first_seq=self._bulk_seq)
        self._bulk_seq = (self._bulk_seq + len(frames)) & 0xFFFF
        self._keep_bulk(tid, frames, len(data))
        drop, self._drop_chunks = self._drop_chunks, set()
        for i, chunk in enumerate(frames):
            if i not in drop:
                await self._broadcast(chunk, MsgType.BULK)
        self.stats.bulk_transfers += 1
        return tid

    # --- receiving --------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        loop = asyncio.get_running_loop()
        link = self.link
        dev = self.device_id
        live = self._live
        table = self._sessions
        decoder = FastDecoder(self._max_payload)
        while True:
            try:
                data = await link.read()
            except LinkError:
                # The host closed the port or the cable went: keep running, read again.
                self.stats.link_drops += 1
                decoder = FastDecoder(self._max_payload)
                await asyncio.sleep(RELINK_S * self._scale)
                if not link.is_open:
                    with contextlib.suppress(LinkError, OSError):
                        await link.open()
                continue
            if self._stalled:
                continue
            now = loop.time()
            for item in decoder.feed(data):
                if isinstance(item, Frame):
                    session, verdict = table.verify(item, now)
                    msg = item.message
                    if session is None:
                        if (
                            verdict is Verdict.UNAUTHENTICATED
                            and type(msg) is Request
                            and msg.command in HANDSHAKE_COMMANDS
                            and item.device == dev
                        ):
                            await self._on_handshake(item.seq, msg, now)
                        else:
                            self._dropped(verdict)
                        continue
                    if session is table.controller:
                        live.last_rx = now  # the lease lives on the controller's frames
                    if type(msg) is Request:
                        if item.device == dev:
                            await self._on_request(item.seq, msg, now, session)
                    elif type(msg) is Ack:
                        self._on_ack(item.seq)
                    elif type(msg) is Nak:
                        await self._on_nak(item.seq, msg, now, session)
                    # host heartbeats only prove the host is alive
                else:
                    await self._on_decode_error(item, now)

    def _dropped(self, verdict: Verdict) -> None:
        stats = self.stats
        if verdict is Verdict.UNAUTHENTICATED:
            stats.unauthenticated += 1
        elif verdict is Verdict.BAD_TAG:
            stats.bad_tags += 1
        elif verdict is Verdict.FOREIGN:
            stats.unknown_sessions += 1
        else:
            stats.replays += 1

    async def _on_handshake(self, seq: int, req: Request, now: float) -> None:
        table = self._sessions
        session: Session | None = None
        if req.command == "link.hello":
            status, fields = table.hello(req.args)
        else:
            (status, fields), session = table.auth(req.args, now)
            if status is Status.OK:
                self.stats.sessions_opened += 1
                if session is table.controller:
                    self._live.last_rx = now
        if status is not Status.OK:
            self.stats.handshake_failures += 1
        out: dict[str, Scalar] = dict(fields)
        out["t_s"] = self._clock.now()
        out["state"] = self.state.name
        out["uptime_ms"] = self.uptime_ms
        seal = None if session is None else session.seal
        await self._send(encode_reply(seq, self.device_id, status, out, seal), MsgType.REPLY)

    async def _on_request(self, seq: int, req: Request, now: float, session: Session) -> None:
        self.stats.requests += 1
        cache = self._cache
        key = (session.sid, seq)
        hit = cache.get(key)
        if hit is not None and hit[0] == req.command and hit[1] == req.args:
            # A re-sent request: answer from the cache, never execute twice.
            self.stats.cache_hits += 1
            await self._reply(seq, hit[2], hit[3], session)
            return
        command = req.command
        fields: Mapping[str, Scalar]
        if not self._sessions.may(session, command, self._read_only):
            self.stats.refused_not_controller += 1
            message = f"{command} needs the control lease; this session only observes"
            status, fields = Status.BAD_STATE, {"fault": "not_controller", "message": message}
        elif self._safe and command in self._refused_in_safe:
            self.stats.refused_in_safe += 1
            message = f"{self.name} is in SAFE state (host lost): {command} refused until cleared"
            status, fields = Status.INTERLOCK, {"fault": "safe_state", "message": message}
        elif command.startswith("link."):
            status, fields = self._link_command(command, req.args, session)
        else:  # the handler, awaited here directly: one coroutine less per request
            self.stats.executed += 1
            try:
                status, fields = await self._handler(command, req.args)
            except Exception as exc:  # the firmware stays up and says what went wrong
                log.exception("%s: handler failed on %s", self.name, command)
                message = f"{type(exc).__name__}: {exc}"
                status, fields = Status.FAULT, {"fault": "internal", "message": message}
        out: dict[str, Scalar] = dict(fields)
        if "t_s" not in out:
            out["t_s"] = self._clock.now()
        if hit is not None:
            del cache[key]
        cache[key] = (req.command, req.args, status, out)
        if len(cache) > REPLY_CACHE:
            cache.popitem(last=False)
        self._recent.append((now, session, seq))
        await self._reply(seq, status, out, session)
        if self._after_reply:
            after, self._after_reply = self._after_reply, []
            for to, chunk in after:
                await self._send(encode_frame(chunk, to.seal), MsgType.BULK)

    async def _reply(
        self, seq: int, status: Status, out: Mapping[str, Scalar], session: Session
    ) -> None:
        try:
            data = encode_reply(seq, self.device_id, status, out, session.seal)
        except ValueError as exc:
            log.error("%s: reply to seq %d not encodable: %s", self.name, seq, exc)
            bad = {"fault": "internal", "message": f"reply not encodable: {exc}"[:200]}
            data = encode_reply(seq, self.device_id, Status.FAULT, bad, session.seal)
        if self._faults:
            await self._send(data, MsgType.REPLY)
        else:  # _send without its fault hooks: the hot path
            try:
                await self.link.write(data)
            except LinkError:
                self.stats.write_failures += 1

    def _link_command(
        self, command: str, args: Mapping[str, Scalar], session: Session
    ) -> tuple[Status, Mapping[str, Scalar]]:
        if command == "link.ping":
            return Status.OK, {}
        if command == "link.release":
            self._sessions.release(session)
            return Status.OK, {}
        if command == "link.clear_safe":
            self._safe = False
            return Status.OK, {"state": self.state.name}
        if command == "link.bulk_resend":
            tid, first, count = (args.get(k) for k in ("transfer_id", "first", "count"))
            if type(tid) is not int or type(first) is not int or type(count) is not int:
                return Status.BAD_ARG, {"message": "transfer_id, first, count: integers"}
            kept = self._bulk.get(tid)
            if kept is None:
                return Status.BAD_ARG, {"message": f"transfer {tid} unknown or expired"}
            chunks = kept[1][max(0, first) : max(0, first) + max(0, count)]
            self._after_reply.extend((session, chunk) for chunk in chunks)
            self.stats.bulk_chunks_resent += len(chunks)
            return Status.OK, {"chunks": len(chunks)}
        return Status.UNKNOWN_COMMAND, {"message": f"no link command {command!r}"}

    def _on_ack(self, seq: int) -> None:
        entry = self._unacked.get(seq)
        if entry is not None and not entry[0].done():
            entry[0].set_result(None)

    async def _on_nak(self, seq: int, nk: Nak, now: float, session: Session) -> None:
        self.stats.naks_received += 1
        if nk.ref_type is MsgType.REPLY:
            hit = self._cache.get((session.sid, seq))
            if hit is not None:
                self.stats.replies_resent += 1
                await self._reply(seq, hit[2], hit[3], session)
        elif nk.ref_type is MsgType.EVENT:
            entry = self._unacked.get(seq)
            if entry is not None:
                await self._send(encode_frame(entry[1], session.seal), MsgType.EVENT)
        elif nk.ref_type is None:
            # The host cannot say which frame was damaged: re-send the replies of the last
            # moments (a reply to a fire-once command is worth more than a few bytes).
            horizon = now - RECENT_REPLY_S * self._scale
            for at, to, s in list(self._recent):
                hit = self._cache.get((to.sid, s))
                if at >= horizon and to is session and hit is not None:
                    self.stats.replies_resent += 1
                    await self._reply(s, hit[2], hit[3], session)

    async def _on_decode_error(self, error: DecodeError, now: float) -> None:
        if error.kind is FrameError.GARBAGE:
            self.stats.garbage_bytes += error.size
            return
        self.stats.decode_errors += 1
        if now - self._last_nak < NAK_INTERVAL_S * self._scale:
            return
        frame = nak_for(error)
        if frame is not None:
            self._last_nak = now
            self.stats.naks_sent += 1
            if self._sessions.sessions:
                await self._broadcast(frame, MsgType.NAK)
            else:  # nobody to seal for: a plain NAK still tells a host its frame was bad
                await self._send(encode_frame(frame), MsgType.NAK)

    # --- sending ----------------------------------------------------------------------------

    async def _broadcast(self, frame: Frame, kind: MsgType) -> None:
        """Send ``frame`` to every open session, sealed for each."""
        for session in self._sessions.sessions:
            await self._send(encode_frame(frame, session.seal), kind)

    async def _send(self, data: bytes, kind: MsgType) -> None:
        if self._faults:
            faulted = self._apply_faults(data, kind)
            if faulted is None:
                return
            data = faulted
        try:
            await self.link.write(data)
        except LinkError:
            self.stats.write_failures += 1  # nobody listening: the firmware carries on

    async def _deliver(self, seq: int, frame: Frame, fut: asyncio.Future[None]) -> None:
        """Re-send a critical event every 100 ms until ACK'd, at most 10 times."""
        wait = CRITICAL_RESEND_S * self._scale
        try:
            for attempt in range(CRITICAL_RESENDS + 1):
                await asyncio.wait((fut,), timeout=wait)
                if fut.done():
                    return
                if attempt < CRITICAL_RESENDS:
                    self.stats.critical_resends += 1
                    await self._broadcast(frame, MsgType.EVENT)
            self.stats.critical_unacked += 1
            log.warning("%s: critical event %d never acknowledged", self.name, seq)
        finally:
            self._unacked.pop(seq, None)

    def _keep_bulk(self, tid: int, frames: list[Frame], size: int) -> None:
        old = self._bulk.pop(tid, None)
        if old is not None:
            self._bulk_bytes -= _bulk_size(old[1])
        expires = self._clock.now() + BULK_KEEP_S * self._scale
        self._bulk[tid] = (expires, frames)
        self._bulk_bytes += size
        while self._bulk_bytes > BULK_KEEP_BYTES and len(self._bulk) > 1:
            _, (_, dropped) = self._bulk.popitem(last=False)
            self._bulk_bytes -= _bulk_size(dropped)

    def _on_period(self, now: float) -> None:
        for tid in [t for t, (expires, _) in self._bulk.items() if expires <= now]:
            _, frames = self._bulk.pop(tid)
            self._bulk_bytes -= _bulk_size(frames)
        self._sessions.expire_observers(now, self._live.timeout_s * self._scale)

    async def _beat(self, now: float) -> None:
        self._hb_seq = (self._hb_seq + 1) & 0xFFFF
        frame = heartbeat(
            self._hb_seq, self.device_id, self.state, self._live.period_ms, self.uptime_ms
        )
        await self._broadcast(frame, MsgType.HEARTBEAT)

    def _host_silent(self) -> None:
        self._sessions.drop_controller()
        self._safe = True
        self.stats.host_lost += 1
        log.warning("%s: host silent for %g s: safe state", self.name, self._live.timeout_s)
        if self._on_host_lost is not None:
            self._spawn(self._host_lost(self._on_host_lost))

    async def _host_lost(self, hook: HostLostHook) -> None:
        try:
            await hook()
        except Exception:
            log.exception("%s: on_host_lost failed", self.name)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


_Cached = tuple[str, Mapping[str, Scalar], Status, Mapping[str, Scalar]]
"""A cached request and its reply: command, args, status, reply fields."""


def _bulk_size(frames: list[Frame]) -> int:
    return sum(len(f.message.data) for f in frames if isinstance(f.message, BulkChunk))
