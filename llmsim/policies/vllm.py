"""vLLM v0 default scheduler (PagedAttention): policies.md section 4.

Each step: if nothing is swapped out, admit prefills FCFS from ``waiting`` while the whole prompt
fits (``can_allocate`` above the watermark), the token budget and ``max_num_seqs``; a step with
any prefill runs no decodes (prefill-prioritising). Otherwise decode every running request in
FCFS order, preempting the last-arrived one whenever a slot cannot be appended; recompute by
default, or swap to host memory. Swap-ins happen only in steps that preempted nothing.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from llmsim.batch import BatchPlan
from llmsim.cluster.kv_cache import KVCache
from llmsim.policies.base import Policy
from llmsim.policies.config import PolicyConfigBase
from llmsim.request import RequestStatus


class VLLMConfig(PolicyConfigBase):
    kind: Literal["vllm"] = "vllm"
    max_num_seqs: int = Field(256, gt=0)
    max_num_batched_tokens: int | None = Field(
        None, gt=0, description="prefill token budget per step; default max(max_model_len, 2048)")
    preemption_mode: Literal["recompute", "swap"] = "recompute"


class VLLMPolicy(Policy[VLLMConfig]):
    name = "vllm"
    cite = ("Kwon et al., Efficient Memory Management for LLM Serving with PagedAttention (vLLM), "
            "SOSP 2023")
    Config = VLLMConfig
    prefix_caching = True

    @property
    def token_budget(self) -> int:
        return self.cfg.max_num_batched_tokens or max(self.limits.max_model_len, 2048)

    def schedule(self, kv: KVCache, now_s: float) -> BatchPlan:
        plan = BatchPlan()
        if not self.swapped:
            self._schedule_prefills(kv, now_s, plan)
            if plan.prefills or plan.rejected:
                return plan
        plan.decodes = self._ensure_decode_slots(kv, plan, self.cfg.preemption_mode,
                                                 list(self.running))
        if plan.num_preempted == 0:
            self._swap_in(kv, plan)
        return plan

    def _schedule_prefills(self, kv: KVCache, now_s: float, plan: BatchPlan) -> None:
        budget = self.token_budget
        while self.waiting:
            r = self.waiting[0]
            n = r.num_uncomputed_tokens
            if n > self.token_budget:  # vLLM ignores prompts longer than its limit
                self.waiting.popleft()
                plan.rejected.append((r, f"prompt of {n} tokens exceeds max_num_batched_tokens "
                                         f"({self.token_budget})"))
                continue
            new = n - kv.cached_prefix_tokens(r.prefix_hashes, n)  # cached: not computed
            if (new > budget or len(self.running) >= self.cfg.max_num_seqs
                    or not kv.can_allocate(n, prefix=r.prefix_hashes)):
                break
            self._admit(r, kv, n)
            plan.prefills.append((r, r.num_uncomputed_tokens))
            budget -= r.num_uncomputed_tokens

    def _swap_in(self, kv: KVCache, plan: BatchPlan) -> None:
        while (self.swapped and len(self.running) < self.cfg.max_num_seqs
               and kv.can_swap_in(self.swapped[0].request_id)):
            r = self.swapped.popleft()
            kv.swap_in(r.request_id)
            r.status = RequestStatus.RUNNING
            self._insert_running(r)
            plan.num_swapped_in += 1
            if kv.can_append(r.request_id):
                kv.append(r.request_id)
                plan.decodes.append(r)
