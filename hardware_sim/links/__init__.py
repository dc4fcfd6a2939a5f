"""Device sides of the transports in ``drivers.links``, for the simulated devices.

Each is a :class:`drivers.links.Link` the device endpoint reads and writes like the host does,
with one difference in semantics: a device keeps running whatever the host does, so these
links never raise :class:`~drivers.links.LinkDown` for host-side trouble (host closing the
port, disconnecting, failing transfers, broker restarts), only after ``close()``. Bytes written
while no host listens are dropped (or, for the pty and the USB gadget, kept in a bounded buffer
whose oldest bytes are discarded), as on the real cable.

- :class:`PtyServer`: serial port over a pty at a stable symlink (``host_url``: ``serial://``);
  fault ``restart()`` (pty closed).
- :class:`TcpServerLink`: one host at a time (``host_url``: ``tcp://``); fault ``drop_peer()``.
- :class:`MqttDeviceLink`: ``mqtt://host:port/prefix`` in the device role, reconnecting.
- :class:`UsbGadget`: USB bulk device served to ``hardware_sim.usb_backend`` (``host_url``:
  ``usb://…?backend=sim``); faults ``fail_next_transfers(n)``, ``drop_host()``.
"""

from ._mqtt import MqttDeviceLink
from ._pty import PtyServer
from ._tcp import TcpServerLink
from ._usb_gadget import UsbGadget

__all__ = ["MqttDeviceLink", "PtyServer", "TcpServerLink", "UsbGadget"]
