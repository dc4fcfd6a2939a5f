"""Where the console listens (the room file's ``console:``), and over what."""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: names that reach a console bound to loopback from this host only
LOOPBACK_NAMES = ("localhost",)
WILDCARDS = ("0.0.0.0", "::", "")


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost: reachable from elsewhere
        return False


class ConsoleSettings(BaseModel):
    """``console:`` in a room file. Loopback and plain HTTP by default (this host only). A
    console other hosts reach needs HTTPS (``tls_cert``, ``tls_key``) and the room's
    ``key_file``: the login password is derived from the room key (``fluoroctl keys console
    ROOM`` prints it). The room file refuses anything else (docs/console.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(
        default="127.0.0.1",
        description="address to bind; off loopback only with tls_cert, tls_key and key_file",
    )
    port: int = Field(default=0, ge=0, le=65535, description="0: any free port (printed)")
    tls_cert: str | None = Field(
        default=None,
        description="PEM certificate (chain) for HTTPS; `fluoroctl keys console-cert ROOM` "
        "makes a self-signed one. Relative paths: from the working directory",
    )
    tls_key: str | None = Field(default=None, description="its PEM private key (mode 0600)")
    server_names: list[str] = Field(
        default_factory=list,
        description="host names and addresses browsers use to reach the console (the Host "
        "header is checked against them); the bound address is always one",
    )

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> ConsoleSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        return self

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    def names(self) -> list[str]:
        """Every name the console answers to (Host header, Origin)."""
        names = [n for n in self.server_names]
        if self.host not in WILDCARDS and self.host not in names:
            names.append(self.host)
        if self.loopback:
            names += [n for n in LOOPBACK_NAMES if n not in names]
        return names
