"""Appends for runs of identical decode steps (the loop's fast-forward): every running request
gains the same number of tokens, checked and applied in one pass. A part of ``KVCache``, kept
apart for size."""
from __future__ import annotations

from typing import TYPE_CHECKING

from llmsim.cluster.kv_swap import KVCacheError, _Table


class DecodeRunAppends:
    """The run verbs; ``KVCache`` holds the state they change."""

    block_size: int
    _gpu: dict[int, _Table]
    num_free_blocks: int
    _num_used_tokens: int

    if TYPE_CHECKING:
        def _take(self, n: int) -> None: ...

    def blocks_needed_for_appends(self, request_ids: list[int], num_tokens: int) -> int:
        """New blocks needed if every request appended ``num_tokens`` more tokens."""
        if num_tokens <= 0:
            return 0
        bs, total = self.block_size, 0
        for r in request_ids:
            t = self._gpu[r]
            slack = t.num_blocks * bs - t.num_tokens
            if num_tokens > slack:
                total += -(-(num_tokens - slack) // bs)
        return total

    def max_uniform_appends(self, request_ids: list[int], max_steps: int) -> int:
        """Largest k <= max_steps such that every request can append k tokens (one per step)."""
        free = self.num_free_blocks
        if self.blocks_needed_for_appends(request_ids, max_steps) <= free:
            return max_steps
        lo, hi = 0, max_steps  # needed(lo) <= free < needed(hi); needed is monotone in k
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.blocks_needed_for_appends(request_ids, mid) <= free:
                lo = mid
            else:
                hi = mid
        return lo

    def append_each(self, request_ids: list[int], num_tokens: int) -> None:
        """``append(r, num_tokens)`` for each request, all or none; the caller checked they fit
        (``max_uniform_appends``). One loop, no call per request: a fused run's hot path."""
        if not self.try_append_each(request_ids, num_tokens):
            need = self.blocks_needed_for_appends(request_ids, num_tokens)
            raise KVCacheError(f"appending {num_tokens} tokens to each of {len(request_ids)} "
                               f"requests needs {need} blocks, {self.num_free_blocks} free")

    def try_append_each(self, request_ids: list[int], num_tokens: int = 1) -> bool:
        """``append(r, num_tokens)`` for each request if all fit, else nothing; whether it did.
        Each request's slot the same as ``try_append`` in turn would give it when all fit."""
        bs, gpu = self.block_size, self._gpu
        grown: list[tuple[_Table, int]] = []
        for r in request_ids:
            t = gpu[r]
            tokens = t.num_tokens + num_tokens
            if tokens > t.num_blocks * bs:
                new = -(-tokens // bs) - t.num_blocks
                t.num_blocks += new
                grown.append((t, new))
            t.num_tokens = tokens
        need = sum(new for _, new in grown)
        if need > self.num_free_blocks:
            for t, new in grown:
                t.num_blocks -= new
            for r in request_ids:
                gpu[r].num_tokens -= num_tokens
            return False
        self._take(need)
        self._num_used_tokens += num_tokens * len(request_ids)
        return True
