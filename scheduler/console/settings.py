"""Where the console listens (the room file's ``console:``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ConsoleSettings(BaseModel):
    """``console: {host, port}`` in a room file. Loopback by default: a console on another
    host needs TLS and credentials, which this console does not provide (docs/console.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(default="127.0.0.1", description="address to bind; keep it loopback")
    port: int = Field(default=0, ge=0, le=65535, description="0: any free port (printed)")
