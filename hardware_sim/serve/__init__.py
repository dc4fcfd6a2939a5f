"""``fluoroctl sim serve``: the simulated room behind real links (device side of the wire)."""

from .server import SimServer, serve_room

__all__ = ["SimServer", "serve_room"]
