"""The prefix cache's index of block hashes (``KVCache`` with ``prefix_caching``), and its host
tier: blocks evicted from the GPU kept in host memory, to be loaded back over PCIe on a hit."""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence


class PrefixIndex:
    """Which block hashes are cached on the GPU: referenced ones with their reference counts,
    and unreferenced (evictable) ones in the order they were released; and, with a host tier of
    ``num_host_blocks``, which evicted ones host memory holds (least recently used first)."""

    def __init__(self, num_host_blocks: int = 0) -> None:
        self.refs: dict[int, int] = {}
        self.evictable: OrderedDict[int, None] = OrderedDict()
        self.num_host_blocks = num_host_blocks
        self.host: OrderedDict[int, None] = OrderedDict()

    def __contains__(self, h: int) -> bool:
        return h in self.refs or h in self.evictable

    def leading(self, hashes: Sequence[int], limit: int) -> int:
        """How many of the first ``limit`` hashes are cached on the GPU, from the first on."""
        n = 0
        while n < limit and hashes[n] in self:
            n += 1
        return n

    def leading_host(self, hashes: Sequence[int], start: int, limit: int) -> int:
        """How many hashes from ``start`` on (below ``limit``) the host tier holds, in a row."""
        n, host = start, self.host
        while n < limit and hashes[n] in host:
            n += 1
        return n - start

    def evict(self) -> None:
        """Drop the least recently released unreferenced GPU block; the host tier keeps it."""
        h, _ = self.evictable.popitem(last=False)
        if self.num_host_blocks:
            self.host[h] = None
            self.host.move_to_end(h)
            if len(self.host) > self.num_host_blocks:
                self.host.popitem(last=False)

    def touch_host(self, hashes: Sequence[int]) -> None:
        """Blocks just loaded from the host tier become its most recently used (the head of
        the chain most of all: it is what the most prompts share)."""
        for h in reversed(hashes):
            self.host.move_to_end(h)
