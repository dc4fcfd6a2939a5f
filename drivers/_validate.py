"""Range checks shared by the value types."""

from __future__ import annotations


def check_range(name: str, value: float, low: float, high: float) -> None:
    if not (low <= value <= high):
        raise ValueError(f"{name}={value} outside [{low}, {high}]")
