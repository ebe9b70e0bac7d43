"""DistServe-style prefill/decode disaggregation: policies.md section 7 (OSDI'24).

Prefill side (§7.2): FCFS prefill-only batches under a request cap and a token cap; a request
is admitted only if its KV fits next to the KV of finished prefills still waiting for the decode
side, so a slow decode side back-pressures prefill (the prefill GPU is the transfer buffer).
Decode side (§7.3): continuous batching (the vLLM mechanics, swap preemption by default) that
*pulls* a migrating request only while the blocks of requests not yet running stay under
``waiting_block_prop_threshold`` of the cache and its prompt fits the free blocks.
"""
from __future__ import annotations

from itertools import islice
from typing import Literal

from pydantic import Field

from llmsim.batch import BatchPlan
from llmsim.cluster.kv_cache import KVCache
from llmsim.policies.base import ConfigT, Policy
from llmsim.policies.config import PolicyConfigBase
from llmsim.policies.roles import PullsKV
from llmsim.policies.vllm import VLLMConfig, VLLMPolicy
from llmsim.request import Request


class PrefillOnly(Policy[ConfigT]):
    """Shared by prefill-side policies: a finished prompt leaves ``running`` as a handoff."""

    def __init__(self, config, limits) -> None:
        super().__init__(config, limits)
        self._handoffs: list[Request] = []
        self.num_unaccepted = 0  # prefilled, KV still held here

    def on_step_end(self, done: list[Request], kv: KVCache) -> list[Request]:
        released = super().on_step_end(done, kv)
        still: list[Request] = []
        for r in self.running:
            (self._handoffs if not r.is_prefilling else still).append(r)
        self.running = still
        return released

    def take_handoffs(self) -> list[Request]:
        out, self._handoffs = self._handoffs, []
        self.num_unaccepted += len(out)
        return out

    def forget(self, r: Request) -> None:
        self.num_unaccepted -= 1

    def _admit_prefills(self, kv: KVCache, candidates, max_rows: int,
                        max_tokens: int | None) -> BatchPlan:
        """Admit candidates in order, each with its whole prompt's KV, until the row cap, the
        token cap or the KV cache stops it (KV still held by un-pulled prefills counts). With
        prefix caching, a prompt's cached blocks are neither computed nor counted."""
        plan, tokens = BatchPlan(), 0
        for r in candidates:
            n = r.num_uncomputed_tokens
            new = n - kv.cached_prefix_tokens(r.prefix_hashes, n)
            if len(plan.prefills) >= max_rows or (max_tokens and plan.prefills
                                                   and tokens + new > max_tokens):
                break
            if not kv.can_allocate(n, prefix=r.prefix_hashes):
                break
            self._admit(r, kv, n)
            plan.prefills.append((r, r.num_uncomputed_tokens))
            tokens += r.num_uncomputed_tokens
        return plan


class DistServePrefillConfig(PolicyConfigBase):
    RENAMED = {"max_tokens_per_batch": "max_num_batched_tokens", "max_batch_size": "max_num_seqs"}
    kind: Literal["distserve_prefill"] = "distserve_prefill"
    max_num_seqs: int = Field(128, gt=0)
    max_num_batched_tokens: int = Field(8192, gt=0)


class DistServePrefillPolicy(PrefillOnly[DistServePrefillConfig]):
    name = "distserve_prefill"
    cite = "Zhong et al., DistServe: Disaggregating Prefill and Decoding, OSDI 2024"
    roles = frozenset({"prefill"})
    Config = DistServePrefillConfig
    prefix_caching = True

    def schedule(self, kv: KVCache, now_s: float) -> BatchPlan:
        rejected = []
        while self.waiting and self.waiting[0].num_uncomputed_tokens > self.cfg.max_num_batched_tokens:
            r = self.waiting.popleft()
            rejected.append((r, f"prompt of {r.num_uncomputed_tokens} tokens exceeds "
                                f"max_num_batched_tokens ({self.cfg.max_num_batched_tokens})"))
        plan = self._admit_prefills(kv, list(islice(self.waiting, self.cfg.max_num_seqs)),
                                    self.cfg.max_num_seqs, self.cfg.max_num_batched_tokens)
        plan.rejected = rejected
        return plan


class DistServeDecodeConfig(VLLMConfig):
    kind: Literal["distserve_decode"] = "distserve_decode"  # type: ignore[assignment]
    max_num_seqs: int = Field(1024, gt=0)
    preemption_mode: Literal["recompute", "swap"] = "swap"
    waiting_block_prop_threshold: float = Field(
        0.05, gt=0, le=1, description="pull KV only while not-yet-running blocks stay under this "
                                      "fraction of the cache (1.0: whenever it fits)")


class DistServeDecodePolicy(PullsKV, VLLMPolicy):
    name = "distserve_decode"
    cite = "Zhong et al., DistServe: Disaggregating Prefill and Decoding, OSDI 2024"
    roles = frozenset({"decode"})
    cfg: DistServeDecodeConfig
    Config = DistServeDecodeConfig
    prefix_caching = False  # KV arrives computed from the prefill side

    def __init__(self, config, limits) -> None:
        super().__init__(config, limits)
        self._inflight_blocks: dict[int, int] = {}  # accepted, KV still in transfer
        self._num_inflight_blocks = 0  # their sum, kept incrementally (checked per offer)

    def can_accept(self, r: Request, kv: KVCache) -> bool:
        # ``waiting`` here holds only recompute-preempted requests: short, so summed on demand.
        pending = self._num_inflight_blocks + sum(
            kv.blocks_for(w.num_known_tokens) for w in self.waiting)
        return (pending < self.cfg.waiting_block_prop_threshold * kv.num_blocks
                and kv.can_allocate(r.num_computed_tokens + 1, ignore_watermark=True))

    def accept(self, r: Request, kv: KVCache) -> None:
        super().accept(r, kv)
        blocks = kv.num_blocks_of(r.request_id)
        self._inflight_blocks[r.request_id] = blocks
        self._num_inflight_blocks += blocks

    def receive(self, r: Request, kv: KVCache) -> None:
        self._num_inflight_blocks -= self._inflight_blocks.pop(r.request_id, 0)
        super().receive(r, kv)
