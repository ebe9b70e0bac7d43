"""Paged KV cache mechanism: block accounting on the GPU and in host swap space.

Policies call the verbs (``can_allocate``/``allocate``/``can_append``/``append``/``free``/swap);
they never do block arithmetic themselves. A request's table holds ``num_blocks`` (blocks in its
block table) and ``num_tokens`` (token slots it has claimed). Reservation-based policies (static,
Orca) allocate more blocks than tokens up front, so their appends never need a new block.

Prefix caching (``prefix_caching``; vLLM's automatic prefix caching): a full prompt block whose
KV has been computed is registered under its chained hash (``commit_prefix``); a later request
whose prompt starts with the same blocks shares them (reference-counted) instead of computing
them again (``allocate`` returns the tokens it found cached). A cached block no request holds
stays cached but counts as free, and is evicted least recently released first when its space is
needed. A request's first ``len(shared)`` blocks are the shared ones. With a host tier
(``num_host_prefix_blocks``), an evicted block stays in host memory; a prompt that continues its
GPU hits with host-held blocks takes fresh GPU blocks for them and loads their KV instead of
computing it (``take_admitted`` tells the instance how much to load). A disk tier
(``num_disk_prefix_blocks``) keeps what the host tier drops (or, without one, what the GPU
evicts), loaded back the same way at the disk's pace.
"""
from __future__ import annotations

from collections.abc import Sequence

from llmsim.cluster.kv_runs import DecodeRunAppends
from llmsim.cluster.kv_swap import HostSwap, KVCacheError, _Table
from llmsim.cluster.prefix_index import PrefixIndex

_NONE = (0, 0, 0)


class KVCache(HostSwap, DecodeRunAppends):
    def __init__(self, num_blocks: int, block_size: int, watermark: float = 0.01,
                 num_host_blocks: int = 0, prefix_caching: bool = False,
                 num_host_prefix_blocks: int = 0, num_disk_prefix_blocks: int = 0) -> None:
        if num_blocks <= 0 or block_size <= 0:
            raise ValueError("num_blocks and block_size must be positive")
        self.num_blocks = num_blocks
        self.block_size = block_size
        # vLLM keeps this many blocks free when admitting new requests, so running ones can grow.
        self.watermark_blocks = int(watermark * num_blocks)
        self.num_host_blocks = num_host_blocks
        self.num_free_blocks = num_blocks
        self.num_free_host_blocks = num_host_blocks
        self._gpu: dict[int, _Table] = {}
        self._host: dict[int, _Table] = {}
        self._num_used_tokens = 0  # claimed token slots on the GPU, kept incrementally
        self.prefix = (PrefixIndex(num_host_prefix_blocks, num_disk_prefix_blocks)
                       if prefix_caching else None)
        self.prefix_hit_tokens = 0  # prompt tokens found cached at admission, in all
        self.prefix_host_hit_tokens = 0  # of which loaded from the host tier
        self.prefix_disk_hit_tokens = 0  # of which loaded from the disk tier
        self.prefix_prompt_tokens = 0  # prompt tokens admitted with prefix caching on
        self._admitted = [0, 0, 0]  # (cached, host-, disk-loaded) tokens since ``take_admitted``

    # ---- derived views -------------------------------------------------------------------
    @property
    def num_used_blocks(self) -> int:
        return self.num_blocks - self.num_free_blocks

    @property
    def num_used_tokens(self) -> int:
        return self._num_used_tokens

    @property
    def capacity_tokens(self) -> int:
        return self.num_blocks * self.block_size

    @property
    def usage(self) -> float:
        return self.num_used_blocks / self.num_blocks

    def blocks_for(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def holds(self, request_id: int) -> bool:
        return request_id in self._gpu

    def is_swapped(self, request_id: int) -> bool:
        return request_id in self._host

    def num_tokens_of(self, request_id: int) -> int:
        return self._gpu[request_id].num_tokens

    def num_blocks_of(self, request_id: int) -> int:
        return self._gpu[request_id].num_blocks

    # ---- GPU verbs -----------------------------------------------------------------------
    def can_allocate(self, num_tokens: int, reserve_tokens: int = 0,
                     ignore_watermark: bool = False, prefix: Sequence[int] = ()) -> bool:
        """Room for a new request of ``num_tokens`` tokens; with prefix caching, the blocks of
        ``prefix`` (its prompt's block hashes) found cached need no new room, though an
        unreferenced one stops counting as free once taken."""
        taken = (self._taken(num_tokens, reserve_tokens, prefix) if prefix and self.prefix
                 else self.blocks_for(max(num_tokens, reserve_tokens)))  # the common case
        return self.num_free_blocks - taken >= (0 if ignore_watermark else self.watermark_blocks)

    def _match(self, prefix: Sequence[int], num_tokens: int) -> tuple[int, int, int, int]:
        """(cached leading blocks on the GPU a request of ``num_tokens`` tokens can share, how
        many of them are unreferenced, how many blocks after them the host or disk tier holds,
        how many of those the disk): whole blocks, leaving at least one token to compute (the
        step that emits the next token); zeros without prefix caching."""
        if not prefix or self.prefix is None:
            return 0, 0, 0, 0
        limit = min(len(prefix), (num_tokens - 1) // self.block_size)
        hits = self.prefix.leading(prefix, limit)
        lower, disk = (self.prefix.leading_lower(prefix, hits, limit)
                       if self.prefix.has_lower_tiers else (0, 0))
        return hits, sum(1 for h in prefix[:hits] if h in self.prefix.evictable), lower, disk

    def _taken(self, num_tokens: int, reserve_tokens: int, prefix: Sequence[int],
               match: tuple[int, int, int, int] | None = None) -> int:
        """Free blocks a new table takes: its own blocks but the GPU hits, plus the hits that
        were unreferenced (they stop counting as free); lower-tier hits need fresh blocks."""
        hits, evictable, _, _ = match or self._match(prefix, num_tokens)
        return self.blocks_for(max(num_tokens, reserve_tokens)) - hits + evictable

    def cached_prefix_tokens(self, prefix: Sequence[int], num_tokens: int) -> int:
        """Tokens of a new request's prompt found cached now, on the GPU or in a lower tier
        (0 with prefix caching off)."""
        hits, _, lower, _ = self._match(prefix, num_tokens)
        return (hits + lower) * self.block_size

    def take_admitted(self) -> tuple[int, int, int]:
        """(prompt tokens found cached, of which to load from the host tier, and from the
        disk tier) in the requests admitted since the last call: the instance prices the loads
        and records them."""
        got = self._admitted
        if not got[0]:  # nothing cached (always, without prefix caching): no allocation
            return _NONE
        self._admitted = [0, 0, 0]
        return got[0], got[1], got[2]

    @property
    def num_admissible_tokens(self) -> int:
        """Token slots a new request could be given now (free blocks above the watermark)."""
        return max(0, self.num_free_blocks - self.watermark_blocks) * self.block_size

    def can_ever_allocate(self, num_tokens: int) -> bool:
        """Whether ``num_tokens`` fit an empty cache (for rejecting requests that never can)."""
        return self.blocks_for(num_tokens) <= self.num_blocks - self.watermark_blocks

    def allocate(self, request_id: int, num_tokens: int, reserve_tokens: int = 0,
                 prefix: Sequence[int] = (), prompt_tokens: int | None = None) -> int:
        """Give a request its blocks; returns how many of its tokens were found cached (their
        KV need not be computed: 0 without prefix caching; host-tier hits are loaded).
        ``prompt_tokens``: the prompt the hit rate counts, when a policy allocates only its
        first chunk (default ``num_tokens``)."""
        if request_id in self._gpu:
            raise KVCacheError(f"request {request_id} already holds KV")
        need = self.blocks_for(max(num_tokens, reserve_tokens))
        match = self._match(prefix, num_tokens)  # once: the check and the sharing use it
        hits = match[0]
        if self._taken(num_tokens, reserve_tokens, prefix, match) > self.num_free_blocks:
            raise KVCacheError(f"request {request_id} needs {need} blocks, {self.num_free_blocks} free")
        shared: list[int] = []
        if self.prefix is not None:
            shared = list(prefix[:hits])
            for h in shared:
                if h in self.prefix.evictable:  # cached, unreferenced: no longer free
                    del self.prefix.evictable[h]
                    self.num_free_blocks -= 1
                    self.prefix.refs[h] = 1
                else:
                    self.prefix.refs[h] += 1
            lower, disk = match[2], match[3]
            if lower:
                self.prefix.touch_lower(prefix[hits:hits + lower])
            cached = (hits + lower) * self.block_size
            from_host, from_disk = (lower - disk) * self.block_size, disk * self.block_size
            self.prefix_hit_tokens += cached
            self.prefix_host_hit_tokens += from_host
            self.prefix_disk_hit_tokens += from_disk
            self.prefix_prompt_tokens += num_tokens if prompt_tokens is None else prompt_tokens
            self._admitted[0] += cached
            self._admitted[1] += from_host
            self._admitted[2] += from_disk
        self._take(need - len(shared))
        self._gpu[request_id] = _Table(need, num_tokens, shared)
        self._num_used_tokens += num_tokens
        return (hits + match[2]) * self.block_size

    def _take(self, n: int) -> None:
        """``n`` free blocks for private use, evicting cached unreferenced ones (least recently
        released first) when the empty ones run short."""
        if self.prefix is not None:
            for _ in range(max(0, n - (self.num_free_blocks - len(self.prefix.evictable)))):
                self.prefix.evict()
        self.num_free_blocks -= n

    def commit_prefix(self, request_id: int, computed_tokens: int, prefix: Sequence[int]) -> None:
        """Register the request's full blocks whose KV is now computed under their hashes,
        from its first unshared block on, so that later requests can share them; a block
        another request already cached stays private (and so do those after it)."""
        if self.prefix is None or not prefix:
            return
        t = self._gpu[request_id]
        full = min(computed_tokens // self.block_size, len(prefix), t.num_blocks)
        for i in range(len(t.shared), full):
            h = prefix[i]
            if h in self.prefix:
                return
            self.prefix.refs[h] = 1  # its private block becomes the cached one
            t.shared.append(h)

    def _new_blocks(self, table: _Table, num_tokens: int) -> int:
        tokens, bs = table.num_tokens + num_tokens, self.block_size
        return 0 if tokens <= table.num_blocks * bs else -(-tokens // bs) - table.num_blocks

    def can_append(self, request_id: int, num_tokens: int = 1) -> bool:
        return self._new_blocks(self._gpu[request_id], num_tokens) <= self.num_free_blocks

    def try_append(self, request_id: int, num_tokens: int = 1) -> bool:
        """``append`` if ``can_append`` allows it; whether it did (a decode slot in one call).
        Once per request per step: ``_new_blocks`` is inlined here (measured ~10% of a fleet
        run's wall time as a call)."""
        t = self._gpu[request_id]
        tokens, bs = t.num_tokens + num_tokens, self.block_size
        new = 0 if tokens <= t.num_blocks * bs else -(-tokens // bs) - t.num_blocks
        if new > self.num_free_blocks:
            return False
        t.num_blocks += new
        t.num_tokens = tokens
        if new and self.prefix is not None:
            self._take(new)
        else:
            self.num_free_blocks -= new
        self._num_used_tokens += num_tokens
        return True

    def append(self, request_id: int, num_tokens: int = 1) -> None:
        if not self.try_append(request_id, num_tokens):
            raise KVCacheError(f"request {request_id} cannot append {num_tokens} tokens")

    def free(self, request_id: int) -> None:
        """Release a request's GPU and host KV (a no-op for a request that holds none); its
        cached blocks no other request holds become evictable, its last block first."""
        table = self._gpu.pop(request_id, None)
        if table is not None:
            self.num_free_blocks += table.num_blocks - len(table.shared)
            self._num_used_tokens -= table.num_tokens
            if table.shared:
                assert self.prefix is not None
                # tail first, as vLLM frees: a chain's head blocks are evicted last
                for h in reversed(table.shared):
                    self.prefix.refs[h] -= 1
                    if not self.prefix.refs[h]:
                        del self.prefix.refs[h]
                        self.prefix.evictable[h] = None
                        self.num_free_blocks += 1
        host = self._host.pop(request_id, None)
        if host is not None:
            self.num_free_host_blocks += host.num_blocks

    def check_invariants(self) -> None:
        """Used by tests: the books balance and nothing is over-allocated."""
        used = sum(t.num_blocks - len(t.shared) for t in self._gpu.values())
        if self.prefix is not None:
            used += len(self.prefix.refs)
            held: dict[int, int] = {}
            for t in self._gpu.values():
                for h in t.shared:
                    held[h] = held.get(h, 0) + 1
            assert held == self.prefix.refs, "reference counts differ from the tables"
            assert not set(self.prefix.refs) & set(self.prefix.evictable), "held and evictable"
            assert len(self.prefix.evictable) <= self.num_free_blocks, "evictable not free"
            assert len(self.prefix.host) <= self.prefix.num_host_blocks, "host tier overfull"
            assert len(self.prefix.disk) <= self.prefix.num_disk_blocks, "disk tier overfull"
        assert used + self.num_free_blocks == self.num_blocks, "GPU blocks leaked"
        assert 0 <= self.num_free_blocks <= self.num_blocks
        host = sum(t.num_blocks for t in self._host.values())
        assert host + self.num_free_host_blocks == self.num_host_blocks, "host blocks leaked"
        for t in self._gpu.values():
            assert t.num_tokens <= t.num_blocks * self.block_size, "tokens exceed blocks"
        assert self._num_used_tokens == sum(t.num_tokens for t in self._gpu.values())
