"""The prefix cache's index of block hashes (``KVCache`` with ``prefix_caching``), and its lower
tiers: blocks evicted from the GPU kept in host memory, and those evicted from host memory (or
from the GPU, without a host tier) on local disk, to be loaded back on a hit."""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence


class PrefixIndex:
    """Which block hashes are cached on the GPU: referenced ones with their reference counts,
    and unreferenced (evictable) ones in the order they were released; and, with a host tier of
    ``num_host_blocks``, which evicted ones host memory holds (least recently used first); with
    a disk tier of ``num_disk_blocks``, which ones the disk holds (what the tier above dropped)."""

    def __init__(self, num_host_blocks: int = 0, num_disk_blocks: int = 0) -> None:
        self.refs: dict[int, int] = {}
        self.evictable: OrderedDict[int, None] = OrderedDict()
        self.num_host_blocks = num_host_blocks
        self.host: OrderedDict[int, None] = OrderedDict()
        self.num_disk_blocks = num_disk_blocks
        self.disk: OrderedDict[int, None] = OrderedDict()

    @property
    def has_lower_tiers(self) -> bool:
        return bool(self.host or self.disk)

    def __contains__(self, h: int) -> bool:
        return h in self.refs or h in self.evictable

    def leading(self, hashes: Sequence[int], limit: int) -> int:
        """How many of the first ``limit`` hashes are cached on the GPU, from the first on."""
        n = 0
        while n < limit and hashes[n] in self:
            n += 1
        return n

    def leading_lower(self, hashes: Sequence[int], start: int, limit: int) -> tuple[int, int]:
        """(how many hashes from ``start`` on, below ``limit``, the host or disk tier holds in a
        row; how many of those only the disk holds)."""
        n, on_disk, host, disk = start, 0, self.host, self.disk
        while n < limit:
            h = hashes[n]
            if h not in host:
                if h not in disk:
                    break
                on_disk += 1
            n += 1
        return n - start, on_disk

    def evict(self) -> None:
        """Drop the least recently released unreferenced GPU block; the host tier keeps it (or,
        without one, the disk tier)."""
        h, _ = self.evictable.popitem(last=False)
        if self.num_host_blocks:
            _put(self.host, h)
            if len(self.host) > self.num_host_blocks:
                h, _ = self.host.popitem(last=False)
            else:
                return
        if self.num_disk_blocks:
            _put(self.disk, h)
            if len(self.disk) > self.num_disk_blocks:
                self.disk.popitem(last=False)

    def touch_lower(self, hashes: Sequence[int]) -> None:
        """Blocks just loaded from a lower tier become its most recently used (the head of
        the chain most of all: it is what the most prompts share)."""
        for h in reversed(hashes):
            tier = self.host if h in self.host else self.disk
            tier.move_to_end(h)


def _put(tier: OrderedDict[int, None], h: int) -> None:
    tier[h] = None
    tier.move_to_end(h)
