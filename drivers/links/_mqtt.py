"""``mqtt[+tls]://HOST[:PORT]/PREFIX``: frames as MQTT messages through a broker (aiomqtt).

The host publishes to ``PREFIX/down`` and reads ``PREFIX/up``; the device (``role=device``, used
by the simulator) the other way round. One write is one message, QoS 0: at-most-once, so a
broker re-delivery can never duplicate a fire-once command (the wire protocol does its own
retries, for idempotent requests only). Clean sessions: nothing is queued for an absent peer.

``mqtt+tls://`` connects over TLS and may log in with a client certificate, a user name and a
password read from a file (URL options in :mod:`drivers.links._mqtt_url`). A broker that
refuses the credentials or the certificate is a :class:`LinkError` saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import uuid
from typing import Any

import aiomqtt

from ._base import Link, LinkDown, LinkError
from ._mqtt_url import BrokerTarget, MqttTarget, Role, parse_mqtt_target
from ._tls import describe_tls_error, read_password

DEFAULT_PORT = 1883
CONNECT_TIMEOUT_S = 5.0
PUBLISH_TIMEOUT_S = 2.0
# Keepalive bounds how long a silently vanished broker (no RST) goes unnoticed by paho; the
# wire heartbeat (1 s) notices far sooner and makes the endpoint reopen anyway.
KEEPALIVE_S = 5
MAX_QUEUED = 4096  # unread incoming messages kept; beyond that aiomqtt drops (QoS 0 anyway)
#: CONNACK codes (MQTT 3.1.1 and 5) that mean "not these credentials"
_REFUSED_CREDENTIALS = {4, 5, 134, 135}


def parse_mqtt_url(url: str, role: Role | None = None) -> tuple[str, int, str, Role]:
    """(host, port, topic prefix, role); ``role`` argument and ``?role=`` must agree."""
    target = parse_mqtt_target(url, role)
    return target.broker.host, target.broker.port, target.prefix, target.role


class MqttLink(Link):
    """One MQTT client; ``read`` returns one message payload, ``write`` publishes one message."""

    def __init__(self, url: str, *, role: Role | None = None) -> None:
        super().__init__(url)
        self.target: MqttTarget = parse_mqtt_target(url, role)
        self.host, self.port = self.target.broker.host, self.target.broker.port
        self.prefix, self.role = self.target.prefix, self.target.role
        down, up = f"{self.prefix}/down", f"{self.prefix}/up"
        self.read_topic, self.write_topic = (up, down) if self.role == "host" else (down, up)
        self._client: aiomqtt.Client | None = None
        self._down: str | None = None

    @property
    def _broker(self) -> str:
        return f"broker {self.host}:{self.port}"

    @property
    def is_open(self) -> bool:
        return self._client is not None and self._down is None

    def _credentials(self) -> tuple[ssl.SSLContext | None, str | None, str | None]:
        """TLS context, user name and password, read from their files now (LinkError)."""
        broker: BrokerTarget = self.target.broker
        context = broker.tls.client_context(self.url) if broker.tls is not None else None
        password = (
            read_password(self.url, broker.password_file)
            if broker.password_file is not None
            else None
        )
        return context, broker.username, password

    async def open(self) -> None:
        await self.close()
        context, username, password = self._credentials()
        heard = _LastWarning()
        client = aiomqtt.Client(
            self.host,
            self.port,
            username=username,
            password=password,
            identifier=f"fluoroctl-{self.role}-{uuid.uuid4().hex[:12]}",
            clean_session=True,
            keepalive=KEEPALIVE_S,
            timeout=CONNECT_TIMEOUT_S,
            max_queued_incoming_messages=MAX_QUEUED,
            tls_context=context,
            logger=heard.logger,
        )
        _harden(client, heard)
        try:
            await client.__aenter__()
        except aiomqtt.MqttError as exc:
            raise LinkError(self.url, self._connect_error(exc)) from exc
        try:
            await client.subscribe(self.read_topic, qos=0)
        except aiomqtt.MqttError as exc:
            await self._release(client)
            raise LinkError(self.url, f"{self._broker}: subscribe failed: {exc}") from exc
        self._client, self._down = client, None

    def _connect_error(self, exc: aiomqtt.MqttError) -> str:
        text = str(exc)
        rc = getattr(exc, "rc", None)
        if getattr(rc, "value", rc) in _REFUSED_CREDENTIALS:
            who = (
                f"user {self.target.broker.username!r}"
                if self.target.broker.username
                else ("an anonymous client")
            )
            return f"{self._broker} refused {who}: {text}"
        tls = self.target.broker.tls
        about_tls = describe_tls_error(exc, self._broker, tls.ca if tls else None)
        if about_tls is not None:
            return about_tls
        if "refused" in text.lower() and "errno" in text.lower():
            return f"{self._broker} refused connection"
        if "timed out" in text.lower():
            return f"{self._broker} did not answer within {CONNECT_TIMEOUT_S:g} s"
        if isinstance(exc, _ClosedBeforeConnack):
            hint = " (a TLS-only broker? then mqtt+tls://)" if tls is None else ""
            return f"{self._broker} closed the connection before accepting it{hint}: {text}"
        return f"cannot connect to {self._broker}: {text}"

    def _fail(self, what: str, exc: BaseException) -> LinkDown:
        if self._down is None:
            cause = exc.__cause__ or exc
            self._down = f"{self._broker} connection lost during {what} ({cause})"
        return LinkDown(self.url, self._down)

    async def read(self) -> bytes:
        while True:
            client = self._client
            if client is None:
                raise LinkDown(self.url, "not open")
            if self._down is not None:
                raise LinkDown(self.url, self._down)
            try:
                message = await anext(client.messages)
            except aiomqtt.MqttError as exc:
                raise self._fail("read", exc) from exc
            payload = message.payload
            if isinstance(payload, bytes | bytearray) and payload:
                return bytes(payload)
            # Empty or non-binary payloads are not frames: nothing to hand to the decoder.

    async def write(self, data: bytes) -> None:
        client = self._client
        if client is None:
            raise LinkDown(self.url, "not open")
        if self._down is not None:
            raise LinkDown(self.url, self._down)
        task = asyncio.current_task()
        cancels = task.cancelling() if task is not None else 0
        try:
            await client.publish(self.write_topic, data, qos=0, timeout=PUBLISH_TIMEOUT_S)
        except aiomqtt.MqttError as exc:
            raise self._fail("write", exc) from exc
        if task is not None and task.cancelling() > cancels:
            # Python 3.11's asyncio.wait_for, inside aiomqtt's publish, returns normally when
            # the publish completes in the same moment as a cancellation: the caller's cancel
            # (an operator's Ctrl-C ending the exam) would be lost. It is raised here instead.
            raise asyncio.CancelledError

    async def close(self) -> None:
        client, self._client = self._client, None
        self._down = None
        if client is not None:
            await self._release(client)

    @staticmethod
    async def _release(client: aiomqtt.Client) -> None:
        # aiomqtt keeps the reason of an unexpected disconnect in a future that only message
        # iteration reads; read it here so asyncio does not log it as never retrieved.
        gone = client._disconnected
        if gone.done() and not gone.cancelled():
            gone.exception()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                await client.__aexit__(None, None, None)


class _ClosedBeforeConnack(aiomqtt.MqttError):
    """The broker hung up before answering CONNECT (TLS alert, protocol error)."""


class _LastWarning(logging.Handler):
    """Keeps paho's last warning for one client (why a connection dropped: a TLS alert...).

    The logger is not registered with :mod:`logging` (nothing accumulates per connection) but
    propagates to aiomqtt's usual ``mqtt`` logger, so configured log output is unchanged.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.last: str | None = None
        self.logger = logging.Logger("mqtt")
        self.logger.parent = logging.getLogger("mqtt")
        self.logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        self.last = record.getMessage()


def _harden(client: aiomqtt.Client, heard: _LastWarning) -> None:
    """Two fixes to aiomqtt's handling of a broker that hangs up during connect (a TLS alert
    for a refused client certificate, a plaintext client on a TLS port):

    - a disconnect before CONNACK fails the connect at once, with paho's reason; aiomqtt
      ignores it and waits out its whole timeout, then reports the broker as not answering;
    - paho asks, from the connecting thread, to watch the socket for writing; when the broker
      has already closed it, aiomqtt's ``add_writer`` fails on a closed descriptor (an error
      reported to the event loop). Here the check and the registration are one step.
    """
    paho = client._client
    on_disconnect = paho.on_disconnect
    loop = asyncio.get_running_loop()

    def disconnected(*args: Any) -> None:
        connected = client._connected
        if not connected.done():
            connected.set_exception(_ClosedBeforeConnack(heard.last or "connection closed"))
        if on_disconnect is not None:
            on_disconnect(*args)

    def want_write(paho_client: Any, _userdata: Any, sock: Any) -> None:
        def write_ready() -> None:  # as aiomqtt's own: a failed write is a disconnect
            try:
                paho_client.loop_write()
            except Exception as exc:
                if not client._disconnected.done():
                    client._disconnected.set_exception(exc)

        def on_loop() -> None:
            # Checked and registered in one step on the loop thread, where paho closes it.
            if sock.fileno() >= 0:
                loop.add_writer(sock.fileno(), write_ready)

        loop.call_soon_threadsafe(on_loop)

    paho.on_disconnect = disconnected
    paho.on_socket_register_write = want_write
