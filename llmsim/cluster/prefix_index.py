"""The prefix cache's index of block hashes (``KVCache`` with ``prefix_caching``)."""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence


class PrefixIndex:
    """Which block hashes are cached: referenced ones with their reference counts, and
    unreferenced (evictable) ones in the order they were released."""

    def __init__(self) -> None:
        self.refs: dict[int, int] = {}
        self.evictable: OrderedDict[int, None] = OrderedDict()

    def __contains__(self, h: int) -> bool:
        return h in self.refs or h in self.evictable

    def leading(self, hashes: Sequence[int], limit: int) -> int:
        """How many of the first ``limit`` hashes are cached, from the first on."""
        n = 0
        while n < limit and hashes[n] in self:
            n += 1
        return n
