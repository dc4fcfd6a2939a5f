"""Bounded LRU caches on ``OrderedDict`` (most recent last)."""

from __future__ import annotations

from collections import OrderedDict
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def trim(cache: OrderedDict[K, V], size: int) -> None:
    """Evict the least recently used entries of ``cache`` beyond ``size``."""
    while len(cache) > size:
        cache.popitem(last=False)
