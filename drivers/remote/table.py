"""Reference table driver over the wire protocol (commands: status, move, stop)."""

from __future__ import annotations

from ..table import Table, TablePosition, TableStatus
from ._base import RemoteDevice
from ._channel import Channel
from ._fields import position_fields, table_status_from


class RemoteTable(RemoteDevice, Table):
    def __init__(self, name: str, channel: Channel) -> None:
        Table.__init__(self, name)
        self._attach(channel)

    async def _move_to(self, target: TablePosition) -> TableStatus:
        op_id, done = self._ops.begin("move_to")
        try:
            # An absolute move is idempotent: a retried request cannot move the table twice.
            await self._channel.call("move", {"op_id": op_id, **position_fields(target)})
            await done
        finally:
            self._ops.forget(op_id)
        return await self._status()

    async def _stop(self) -> None:
        await self._channel.call("stop")

    async def _status(self) -> TableStatus:
        return table_status_from(await self._channel.call("status"), self._channel.to_host_time)
