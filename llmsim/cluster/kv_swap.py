"""Host swap space of the paged KV cache: a preempted request's whole block table moved to host
memory and back (vLLM's swap preemption). A part of ``KVCache``, kept apart for size."""
from __future__ import annotations

from dataclasses import dataclass, field


class KVCacheError(RuntimeError):
    """A verb was called in a state its ``can_*`` check would have refused: a policy bug."""


@dataclass(slots=True)
class _Table:
    num_blocks: int
    num_tokens: int
    shared: list[int] = field(default_factory=list)  # hashes of its leading cached blocks


class HostSwap:
    """The swap verbs; ``KVCache`` holds the state they move."""

    _gpu: dict[int, _Table]
    _host: dict[int, _Table]
    num_free_blocks: int
    num_free_host_blocks: int
    watermark_blocks: int
    _num_used_tokens: int

    def can_swap_out(self, request_id: int) -> bool:
        t = self._gpu[request_id]  # shared prefix blocks stay on the GPU: recompute instead
        return not t.shared and t.num_blocks <= self.num_free_host_blocks

    def swap_out(self, request_id: int) -> None:
        if not self.can_swap_out(request_id):
            raise KVCacheError(f"no host space to swap out request {request_id}")
        table = self._gpu.pop(request_id)
        self.num_free_blocks += table.num_blocks
        self._num_used_tokens -= table.num_tokens
        self._host[request_id] = table
        self.num_free_host_blocks -= table.num_blocks

    def can_swap_in(self, request_id: int) -> bool:
        need = self._host[request_id].num_blocks
        return self.num_free_blocks - need >= self.watermark_blocks

    def swap_in(self, request_id: int) -> None:
        if not self.can_swap_in(request_id):
            raise KVCacheError(f"no GPU space to swap in request {request_id}")
        table = self._host.pop(request_id)
        self.num_free_host_blocks += table.num_blocks
        self._gpu[request_id] = table
        self.num_free_blocks -= table.num_blocks
        self._num_used_tokens += table.num_tokens

    def num_swap_blocks_of(self, request_id: int) -> int:
        return self._host[request_id].num_blocks
