"""Orca iteration-level scheduling with selective batching: policies.md section 3.

Every iteration re-includes the running requests (FCFS) and then admits new ones while the batch
has room and the KV pool can *reserve* each newcomer's maximum length up front, so a running
request never runs out of memory. New requests run their whole prompt in the iteration they
join; mixed prefill+decode batches are the norm.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from llmsim.batch import BatchPlan
from llmsim.cluster.kv_cache import KVCache
from llmsim.policies.base import Policy
from llmsim.policies.config import PolicyConfigBase


class OrcaConfig(PolicyConfigBase):
    RENAMED = {"max_batch_size": "max_num_seqs"}
    kind: Literal["orca"] = "orca"
    max_num_seqs: int = Field(128, gt=0)
    reserve_tokens: int | None = Field(
        None, gt=0, description="KV tokens reserved per request; default max_model_len, or "
                                "prompt + predicted output when a predictor is configured")


class OrcaPolicy(Policy[OrcaConfig]):
    name = "orca"
    cite = ("Yu et al., Orca: A Distributed Serving System for Transformer-Based Generative "
            "Models, OSDI 2022")
    Config = OrcaConfig

    def _reserve(self, r) -> int:
        if r.predicted_output_tokens is not None and self.cfg.reserve_tokens is None:
            return r.prompt_tokens + r.predicted_output_tokens
        return self.cfg.reserve_tokens or self.limits.max_model_len

    def schedule(self, kv: KVCache, now_s: float) -> BatchPlan:
        plan = BatchPlan()
        decoding = [r for r in self.running if not r.is_prefilling]
        # Growth stays inside the reservation; past it (a short reserve_tokens) Orca has no
        # answer, so fall back to recompute preemption rather than over-allocate.
        plan.decodes = self._ensure_decode_slots(kv, plan, "recompute", decoding)
        for r in self.running:
            if r.is_prefilling:
                plan.prefills.append((r, r.num_uncomputed_tokens))
        while self.waiting and len(self.running) < self.cfg.max_num_seqs:
            r = self.waiting[0]
            n = r.num_uncomputed_tokens
            reserve = self._reserve(r)
            if not kv.can_allocate(n, reserve):
                if not kv.can_ever_allocate(max(n, reserve)):
                    self.waiting.popleft()
                    plan.rejected.append((r, f"reservation of {max(n, reserve)} tokens exceeds "
                                             f"the KV capacity ({kv.capacity_tokens})"))
                    continue
                break
            self._admit(r, kv, n, reserve)
            plan.prefills.append((r, n))
        return plan
