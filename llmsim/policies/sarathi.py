"""Sarathi-Serve stall-free batching with chunked prefills: policies.md section 5.

NOTE (the token budget rule, Sarathi-Serve section 4): every step holds at most ``max_num_batched_tokens``
tokens. Decodes go first (1 token each, preempting the last-arrived request by recompute when a
slot cannot be appended), then ongoing partial prefills, then new prompts from ``waiting`` whose
whole prompt's blocks can be allocated up front, each taking ``min(remaining, budget left)``.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from llmsim.batch import BatchPlan
from llmsim.cluster.kv_cache import KVCache
from llmsim.policies.base import Policy
from llmsim.policies.config import PolicyConfigBase


class SarathiConfig(PolicyConfigBase):
    RENAMED = {"chunk_size": "max_num_batched_tokens"}
    kind: Literal["sarathi"] = "sarathi"
    max_num_batched_tokens: int = Field(512, gt=0, description="token budget per step")
    max_num_seqs: int = Field(128, gt=0)


class SarathiPolicy(Policy[SarathiConfig]):
    name = "sarathi"
    cite = ("Agrawal et al., Taming Throughput-Latency Tradeoff in LLM Inference with "
            "Sarathi-Serve, OSDI 2024")
    Config = SarathiConfig
    prefix_caching = True

    def schedule(self, kv: KVCache, now_s: float) -> BatchPlan:
        plan = BatchPlan()
        budget = self.cfg.max_num_batched_tokens
        decoding = [r for r in self.running if not r.is_prefilling]
        plan.decodes = self._ensure_decode_slots(kv, plan, "recompute", decoding)
        budget -= len(plan.decodes)
        for r in self.running:  # ongoing partial prefills, FCFS
            if budget <= 0:
                break
            if r.is_prefilling:
                n = min(r.num_uncomputed_tokens, budget)
                plan.prefills.append((r, n))
                budget -= n
        while self.waiting and budget > 0 and len(self.running) < self.cfg.max_num_seqs:
            r = self.waiting[0]
            if not kv.can_allocate(r.num_uncomputed_tokens, prefix=r.prefix_hashes):
                break
            self._admit(r, kv, r.num_uncomputed_tokens)  # cached prompt blocks count computed
            n = min(r.num_uncomputed_tokens, budget)
            plan.prefills.append((r, n))
            budget -= n
        return plan
