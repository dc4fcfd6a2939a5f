"""``mqtt://HOST[:PORT]/PREFIX``: frames as MQTT messages through a broker (aiomqtt).

The host publishes to ``PREFIX/down`` and reads ``PREFIX/up``; the device (``role=device``, used
by the simulator) the other way round. One write is one message, QoS 0: at-most-once, so a
broker re-delivery can never duplicate a fire-once command (the wire protocol does its own
retries, for idempotent requests only). Clean sessions: nothing is queued for an absent peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Literal

import aiomqtt

from ._base import Link, LinkDown, LinkError
from ._url import MQTT_FORM, bad_url, host_port, query, reject_unknown, split

Role = Literal["host", "device"]
DEFAULT_PORT = 1883
CONNECT_TIMEOUT_S = 5.0
PUBLISH_TIMEOUT_S = 2.0
# Keepalive bounds how long a silently vanished broker (no RST) goes unnoticed by paho; the
# wire heartbeat (1 s) notices far sooner and makes the endpoint reopen anyway.
KEEPALIVE_S = 5
MAX_QUEUED = 4096  # unread incoming messages kept; beyond that aiomqtt drops (QoS 0 anyway)


def parse_mqtt_url(url: str, role: Role | None = None) -> tuple[str, int, str, Role]:
    """(host, port, topic prefix, role); ``role`` argument and ``?role=`` must agree."""
    parts = split(url, MQTT_FORM)
    if parts.scheme != "mqtt":
        raise bad_url(url, f"scheme {parts.scheme!r} is not mqtt", MQTT_FORM)
    host, port = host_port(url, parts, MQTT_FORM, DEFAULT_PORT)
    prefix = parts.path.strip("/")
    if not prefix:
        raise bad_url(url, "no topic prefix", MQTT_FORM)
    if any(c in prefix for c in "+#\0") or "//" in prefix:
        raise bad_url(url, f"topic prefix {prefix!r} has wildcards or empty levels", MQTT_FORM)
    options = query(url, parts, MQTT_FORM)
    reject_unknown(url, options, {"role"}, MQTT_FORM)
    url_role = options.get("role")
    if url_role is not None and url_role not in ("host", "device"):
        raise bad_url(url, f"role={url_role!r} is not host or device", MQTT_FORM)
    if role is not None and url_role is not None and role != url_role:
        raise bad_url(url, f"role={url_role} in the URL but {role} requested", MQTT_FORM)
    chosen: Role = role or ("device" if url_role == "device" else "host")
    return host, port, prefix, chosen


class MqttLink(Link):
    """One MQTT client; ``read`` returns one message payload, ``write`` publishes one message."""

    def __init__(self, url: str, *, role: Role | None = None) -> None:
        super().__init__(url)
        self.host, self.port, self.prefix, self.role = parse_mqtt_url(url, role)
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

    async def open(self) -> None:
        await self.close()
        client = aiomqtt.Client(
            self.host,
            self.port,
            identifier=f"fluoroctl-{self.role}-{uuid.uuid4().hex[:12]}",
            clean_session=True,
            keepalive=KEEPALIVE_S,
            timeout=CONNECT_TIMEOUT_S,
            max_queued_incoming_messages=MAX_QUEUED,
        )
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
        if "refused" in text.lower() and "errno" in text.lower():
            return f"{self._broker} refused connection"
        if "timed out" in text.lower():
            return f"{self._broker} did not answer within {CONNECT_TIMEOUT_S:g} s"
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
        try:
            await client.publish(self.write_topic, data, qos=0, timeout=PUBLISH_TIMEOUT_S)
        except aiomqtt.MqttError as exc:
            raise self._fail("write", exc) from exc

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
