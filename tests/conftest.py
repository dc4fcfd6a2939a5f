"""Shared fixtures: paths to the shipped configs and a runner for coroutines on virtual time."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from drivers import VirtualTimeEventLoop

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture
def run_virtual() -> Callable[[Callable[[], Awaitable[Any]]], Any]:
    """Run ``factory()`` to completion on a fresh virtual-time loop."""

    def run(factory: Callable[[], Awaitable[T]]) -> T:
        loop = VirtualTimeEventLoop()
        try:
            return loop.run_until_complete(factory())
        finally:
            loop.close()

    return run
