"""Device side of the wire protocol: the endpoint simulated devices serve their link with."""

from .endpoint import DeviceEndpoint, EndpointStats, Handler, HostLostHook
from .fdlink import FdLink

__all__ = ["DeviceEndpoint", "EndpointStats", "FdLink", "Handler", "HostLostHook"]
