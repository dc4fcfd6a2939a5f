"""Where the shipped configuration lives."""

from __future__ import annotations

from pathlib import Path

#: The repository root when running from a checkout (configs/ lives there).
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def default_room_path() -> Path:
    """configs/rooms/simulator.yaml in the working directory, else in the checkout."""
    local = Path("configs/rooms/simulator.yaml")
    return local if local.exists() else PROJECT_ROOT / local
