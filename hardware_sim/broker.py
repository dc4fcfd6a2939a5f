"""A private Mosquitto broker for the simulated room and the tests.

``Mosquitto()`` starts ``mosquitto`` (on PATH or ``/usr/sbin/mosquitto``) on a free loopback
port with a generated config in a temporary directory (no persistence), and waits until it
accepts TCP connections. ``restart()`` stops it and starts it again on the same port (the
"broker restarted" fault). Blocking calls, each bounded by ``start_timeout_s``.

Without ``security`` the broker is plain and anonymous (link tests of the transport itself).
With a :class:`~hardware_sim.broker_auth.BrokerSecurity` (what ``sim serve`` uses) its only
listener is TLS on loopback, requiring a client certificate from the CA, a password and the
ACL; anonymous access is off::

    with Mosquitto() as broker:
        url = broker.url("room1/injector")    # mqtt://127.0.0.1:PORT/room1/injector

    secured = secure_broker_files(run_dir / "broker", {"injector": "room1/injector"})
    with Mosquitto(security=secured.security) as broker:
        url = broker.url("room1/injector", secured.query("host"))  # mqtt+tls://...?ca=...
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .broker_auth import BrokerSecurity

FALLBACK_PATH = "/usr/sbin/mosquitto"
HOST = "127.0.0.1"


class MosquittoError(RuntimeError):
    """Mosquitto is missing or would not start; the message says which and why."""


def find_mosquitto() -> str:
    found = shutil.which("mosquitto")
    if found:
        return found
    if os.access(FALLBACK_PATH, os.X_OK):
        return FALLBACK_PATH
    raise MosquittoError(
        f"mosquitto not found on PATH or at {FALLBACK_PATH}: "
        "install Debian package mosquitto (apt-get install mosquitto)"
    )


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class Mosquitto:
    def __init__(
        self,
        port: int | None = None,
        *,
        binary: str | None = None,
        start_timeout_s: float = 5.0,
        security: BrokerSecurity | None = None,
    ) -> None:
        self.binary = binary or find_mosquitto()
        self.security = security
        self.host = HOST
        self._fixed_port = port
        self.port = port or 0
        self.start_timeout_s = start_timeout_s
        self._dir = Path(tempfile.mkdtemp(prefix="fluoroctl-mosquitto-"))
        self._proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_path(self) -> Path:
        return self._dir / "mosquitto.log"

    @property
    def address(self) -> str:
        """``mqtt://127.0.0.1:PORT``, or ``mqtt+tls://`` when secured (no credentials)."""
        scheme = "mqtt" if self.security is None else "mqtt+tls"
        return f"{scheme}://{self.host}:{self.port}"

    def url(self, prefix: str, query: str = "") -> str:
        """The link URL of ``prefix`` for ``drivers.links.open_link``; ``query`` carries a
        secured broker's client options (``SecuredBroker.query(identity)``)."""
        return f"{self.address}/{prefix.strip('/')}" + (f"?{query}" if query else "")

    def start(self) -> None:
        if self.running:
            return
        # A free port can be taken between probing and mosquitto binding it: retry a few times
        # with fresh ports, unless the caller fixed the port (or this is a restart).
        attempts = 1 if self._fixed_port or self.port else 3
        for attempt in range(attempts):
            if not self.port:
                self.port = free_port()
            try:
                self._launch()
                return
            except MosquittoError:
                if attempt == attempts - 1:
                    raise
                self.port = 0

    def _launch(self) -> None:
        conf = self._dir / "mosquitto.conf"
        access = (
            "allow_anonymous true\n" if self.security is None else self.security.mosquitto_conf()
        )
        conf.write_text(
            f"listener {self.port} {self.host}\n" + access + "persistence false\n"
            # As root mosquitto would switch to user "mosquitto", who cannot write our log.
            f"user {getpass.getuser()}\n"
            f"log_dest file {self.log_path}\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
        )
        with open(self._dir / "stderr.log", "ab") as err:
            self._proc = subprocess.Popen(
                [self.binary, "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            if _accepts(self.host, self.port):
                return
            time.sleep(0.02)
        self._fail_start()

    def _fail_start(self) -> None:
        proc, self._proc = self._proc, None
        assert proc is not None
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=5)
        text = ""
        for path in (self._dir / "stderr.log", self.log_path):
            if path.exists():
                text += path.read_text(errors="replace")
        detail = text.strip().splitlines()[-3:]
        why = f"exited with status {proc.returncode}" if proc.returncode else "did not accept"
        raise MosquittoError(
            f"mosquitto on {self.host}:{self.port} {why} within {self.start_timeout_s:g} s: "
            + (" | ".join(detail) or "no output")
        )

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def restart(self) -> None:
        """Stop and start again on the same port: every client is disconnected."""
        self.stop()
        self.start()
        self.restarts += 1

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
