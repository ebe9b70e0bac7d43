"""transformers' continuous-batching engine (``ContinuousBatchingManager``, 5.17), as a policy.

Follows ``transformers/generation/continuous_batching/scheduler.py`` as read on the GPU machines:
each step walks a candidate list and gives every candidate ``min(tokens it has left, token
budget left)`` tokens of ``max_num_batched_tokens``, until the budget, ``max_num_seqs`` or
the candidates run out.
- ``fifo``: running decodes first, then split (partially prefilled) requests, then waiting ones
  in arrival order. Default safety margin 0.15.
- ``prefill_first``: split prefills first, then decodes, then waiting ones. Default margin 0.
- Safety margin: once free KV blocks fall below ``safety_margin`` of the pool, only decodes (and
  the first candidate) are scheduled; a candidate whose new tokens' blocks do not fit is skipped
  (``continue``, not ``break``), so a later, smaller one may still run.
- Blocks are allocated as tokens are processed (a chunk at a time), never reserved up front.
- Prefix sharing (``allow_block_sharing``; ``kv_cache.prefix_caching``): a request scheduled for
  the first time shares the cached full blocks its prompt starts with and is given
  ``min(tokens left after them, budget left)`` tokens.
- When nothing fits at all, the engine offloads a running request to host memory; here the
  last-arrived running one is preempted by recompute, the closest mechanism (never seen in the committed
  runs: their pools held every request).
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from pydantic import Field

from llmsim.batch import BatchPlan
from llmsim.cluster.kv_cache import KVCache
from llmsim.policies.base import Policy
from llmsim.policies.config import PolicyConfigBase
from llmsim.request import Request, RequestStatus


class HFContinuousBatchingConfig(PolicyConfigBase):
    RENAMED = {"max_batch_tokens": "max_num_batched_tokens", "max_requests_per_batch": "max_num_seqs"}
    kind: Literal["hf_cb"] = "hf_cb"
    scheduler: Literal["fifo", "prefill_first"] = "fifo"
    max_num_batched_tokens: int = Field(256, gt=0, description="token budget per step")
    max_num_seqs: int | None = Field(None, gt=0, description="default: max_num_batched_tokens")
    safety_margin: float | None = Field(None, ge=0, le=1,
                                        description="default 0.15 (fifo) / 0.0 (prefill_first)")


class HFContinuousBatchingPolicy(Policy[HFContinuousBatchingConfig]):
    name = "hf_cb"
    cite = "Hugging Face transformers 5.17 continuous batching (ContinuousBatchingManager)"
    Config = HFContinuousBatchingConfig
    prefix_caching = True

    def __init__(self, config, limits) -> None:
        super().__init__(config, limits)
        c = self.cfg
        self.margin = c.safety_margin if c.safety_margin is not None else \
            (0.15 if c.scheduler == "fifo" else 0.0)
        self.max_requests = c.max_num_seqs or c.max_num_batched_tokens

    def _candidates(self) -> Iterator[Request]:
        """In the scheduler's order, lazily: the waiting queue is walked only as far as the
        step's budget reaches, and a candidate admitted meanwhile has left it."""
        split = [r for r in self.running if r.is_prefilling]
        decoding = [r for r in self.running if not r.is_prefilling]
        first, second = (decoding, split) if self.cfg.scheduler == "fifo" else (split, decoding)
        yield from first
        yield from second
        i = 0
        while i < len(self.waiting):
            r = self.waiting[i]
            yield r
            if i < len(self.waiting) and self.waiting[i] is r:
                i += 1  # skipped: still waiting

    def schedule(self, kv: KVCache, now_s: float) -> BatchPlan:
        plan = BatchPlan()
        # the instance turns away on arrival what can never fit with its output; a policy sees
        # only the prompt (never the true output length)
        while self.waiting and not kv.can_ever_allocate(self.waiting[0].prompt_tokens):
            plan.rejected.append((self.waiting.popleft(), "the prompt exceeds the KV pool"))
        while True:
            failed = self._fill(plan, kv)
            if not (failed and plan.is_empty and self.running):
                # with nobody waiting, the same decodes repeat until an arrival or a finish
                plan.fusable = not self.waiting
                return plan
            # nothing fits: free the last-arrived running request's KV and try again
            self._preempt(self.running[-1], kv, "recompute")
            plan.num_preempted += 1

    def _fill(self, plan: BatchPlan, kv: KVCache) -> bool:
        budget, slots = self.cfg.max_num_batched_tokens, self.max_requests
        in_margin = kv.num_free_blocks >= self.margin * kv.num_blocks
        failed = False
        for r in self._candidates():
            admitted = r.status == RequestStatus.RUNNING
            decoding = admitted and not r.is_prefilling
            if not in_margin and (plan.prefills or plan.decodes) and not decoding:
                break
            cached = 0 if admitted else kv.cached_prefix_tokens(r.prefix_hashes,
                                                                r.num_uncomputed_tokens)
            n = 1 if decoding else min(r.num_uncomputed_tokens - cached, budget)
            if not self._fits(r, kv, n, cached):
                failed = True
                continue
            if decoding:
                kv.append(r.request_id)
                plan.decodes.append(r)
            else:
                if admitted:
                    kv.append(r.request_id, n)
                else:
                    self._admit(r, kv, cached + n)  # the cached blocks count computed
                plan.prefills.append((r, n))
            budget -= n
            slots -= 1
            if budget == 0 or slots == 0:
                break
        return failed

    @staticmethod
    def _fits(r: Request, kv: KVCache, n: int, cached: int = 0) -> bool:
        if kv.holds(r.request_id):
            return kv.can_append(r.request_id, n)
        return kv.can_allocate(cached + n, ignore_watermark=True, prefix=r.prefix_hashes)
