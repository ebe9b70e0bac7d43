"""DistServe-style prefill/decode disaggregation: policies.md section 7 (OSDI'24).

Prefill side (§7.2): FCFS prefill-only batches under a request cap and a token cap; a request
is admitted only if its KV fits next to the KV of finished prefills still waiting for the decode
side, so a slow decode side back-pressures prefill (the prefill GPU is the transfer buffer).
Decode side (§7.3): continuous batching (the vLLM mechanics, swap preemption by default) that
*pulls* a migrating request only while the blocks of requests not yet running stay under
``waiting_block_prop_threshold`` of the cache and its prompt fits the free blocks.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from llmsim.batch import BatchPlan
from llmsim.cluster.kv_cache import KVCache
from llmsim.policies.base import Policy
from llmsim.policies.vllm import VLLMConfig, VLLMPolicy
from llmsim.request import Request


class PrefillOnly(Policy):
    """Shared by prefill-side policies: a finished prompt leaves ``running`` as a handoff."""

    def __init__(self, config, limits) -> None:
        super().__init__(config, limits)
        self._handoffs: list[Request] = []
        self.num_unaccepted = 0  # prefilled, KV still held here

    def on_step_end(self, done: list[Request], kv: KVCache) -> list[Request]:
        released = super().on_step_end(done, kv)
        still = []
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

    def _prefill_plan(self, kv: KVCache, batch: list[Request]) -> BatchPlan:
        plan = BatchPlan()
        for r in batch:
            n = r.num_uncomputed_tokens
            kv.allocate(r.request_id, n)
            self.waiting.remove(r)
            r.status = r.status.RUNNING
            self._insert_running(r)
            plan.prefills.append((r, n))
        return plan


class DistServePrefillConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["distserve_prefill"] = "distserve_prefill"
    max_batch_size: int = Field(128, gt=0)
    max_tokens_per_batch: int = Field(8192, gt=0)


class DistServePrefillPolicy(PrefillOnly):
    name = "distserve_prefill"
    Config = DistServePrefillConfig

    def schedule(self, kv: KVCache, now_s: float) -> BatchPlan:
        batch, tokens, need = [], 0, 0
        rejected = []
        for r in list(self.waiting):
            n = r.num_uncomputed_tokens
            if n > self.cfg.max_tokens_per_batch:
                self.waiting.remove(r)
                rejected.append((r, f"prompt of {n} tokens exceeds max_tokens_per_batch "
                                    f"({self.cfg.max_tokens_per_batch})"))
                continue
            need += kv.blocks_for(n)
            if (len(batch) >= self.cfg.max_batch_size or tokens + n > self.cfg.max_tokens_per_batch
                    or need > kv.num_free_blocks - kv.watermark_blocks):
                break
            batch.append(r)
            tokens += n
        plan = self._prefill_plan(kv, batch)
        plan.rejected = rejected
        return plan


class DistServeDecodeConfig(VLLMConfig):
    kind: Literal["distserve_decode"] = "distserve_decode"  # type: ignore[assignment]
    max_num_seqs: int = Field(1024, gt=0)
    preemption_mode: Literal["recompute", "swap"] = "swap"
    waiting_block_prop_threshold: float = Field(
        0.05, gt=0, le=1, description="pull KV only while not-yet-running blocks stay under this "
                                      "fraction of the cache (1.0: whenever it fits)")


class DistServeDecodePolicy(VLLMPolicy):
    name = "distserve_decode"
    Config = DistServeDecodeConfig

    def __init__(self, config, limits) -> None:
        super().__init__(config, limits)
        self._inflight_blocks: dict[int, int] = {}  # accepted, KV still in transfer

    def can_accept(self, r: Request, kv: KVCache) -> bool:
        pending = sum(self._inflight_blocks.values()) + sum(
            kv.blocks_for(w.num_known_tokens) for w in self.waiting)
        need = kv.blocks_for(r.num_computed_tokens + 1)
        return (pending < self.cfg.waiting_block_prop_threshold * kv.num_blocks
                and need <= kv.num_free_blocks)

    def accept(self, r: Request, kv: KVCache) -> None:
        super().accept(r, kv)
        self._inflight_blocks[r.request_id] = kv.num_blocks_of(r.request_id)

    def receive(self, r: Request, kv: KVCache) -> None:
        self._inflight_blocks.pop(r.request_id, None)
        super().receive(r, kv)
