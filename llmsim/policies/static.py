"""Static (request-level) batching, FasterTransformer / HF ``generate`` style: policies.md §2.

A batch forms only when the previous one has completely finished: FCFS from ``waiting`` while
``len(batch) < max_num_seqs`` and the KV pool can reserve each request's full length. With
``max_wait_s > 0`` a partial batch waits until the oldest request has waited that long.
In padded execution (the default) every row costs the batch's longest prompt, and finished rows
keep occupying their slot until the longest output is done; results are released when the
batch ends (``release_at_batch_end``), as ``generate`` returns them. ``max_length`` is
``generate``'s cap on prompt + new tokens: every row of a batch stops after ``max_length`` minus
the batch's (padded) longest prompt new tokens, its answer cut there if longer.
"""
from __future__ import annotations

from itertools import islice
from typing import Literal

from pydantic import Field

from llmsim.batch import BatchPlan
from llmsim.cluster.kv_cache import KVCache
from llmsim.policies.base import Policy
from llmsim.policies.config import PolicyConfigBase
from llmsim.request import Request, cap_new_tokens


class StaticConfig(PolicyConfigBase):
    RENAMED = {"max_batch_size": "max_num_seqs"}
    kind: Literal["static"] = "static"
    max_num_seqs: int = Field(128, gt=0)
    max_wait_s: float = Field(0.0, ge=0, description="hold a partial batch this long at most")
    reserve_tokens: int | None = Field(None, gt=0, description="per request; default max_model_len")
    padded: bool = True
    release_at_batch_end: bool = True
    max_length: int | None = Field(None, gt=0, description="generate()'s cap on prompt + new "
                                   "tokens per batch (answers cut there); none: no cap")


class StaticPolicy(Policy[StaticConfig]):
    name = "static"
    cite = "request-level batching as FasterTransformer and Hugging Face generate() run it"
    Config = StaticConfig

    def __init__(self, config, limits) -> None:
        super().__init__(config, limits)
        self.batch: list[Request] = []
        self.done: list[Request] = []  # finished rows still in the batch
        self.padded_prompt_tokens = 0

    def schedule(self, kv: KVCache, now_s: float) -> BatchPlan:
        if not self.batch:
            return self._form_batch(kv, now_s)
        active = [r for r in self.running if not r.is_prefilling]
        plan = BatchPlan()
        # Within the reservation an append never needs a block. Past it (a reservation from a
        # predicted length that was too short) rows take free blocks; if none are left, the
        # last-arrived row is preempted by recompute: the simulator's overflow guard.
        plan.decodes = self._ensure_decode_slots(kv, plan, "recompute", active)
        if self.cfg.padded:
            plan.padding_rows = list(self.done)
            plan.padded_prompt_tokens = self.padded_prompt_tokens
        return plan

    def _hold_until_s(self, now_s: float) -> float | None:
        """When a partial batch may start (``max_wait_s`` after its oldest arrival), if not yet.
        The wake-up instant and the test are one expression, so float rounding can never leave
        the wait at zero seconds forever."""
        start_s = self.waiting[0].arrival_s + self.cfg.max_wait_s
        if len(self.waiting) < self.cfg.max_num_seqs and now_s < start_s:
            return start_s
        return None

    def _form_batch(self, kv: KVCache, now_s: float) -> BatchPlan:
        plan = BatchPlan()
        if not self.waiting:
            return plan
        plan.wake_at_s = self._hold_until_s(now_s)
        if plan.wake_at_s is not None:
            return plan
        reserve = self.cfg.reserve_tokens or self.limits.max_model_len
        return self._start_batch(kv, list(islice(self.waiting, self.cfg.max_num_seqs)), reserve,
                                 self.cfg.max_length)

    def _start_batch(self, kv: KVCache, rows: list[Request], reserve: int,
                     max_length: int | None = None) -> BatchPlan:
        """Admit ``rows`` in order while each can reserve ``reserve`` tokens of KV; the batch's
        prefill runs padded to its longest prompt when ``padded``; with ``max_length`` each row
        stops after ``max_length`` minus that prompt new tokens (``generate``'s cap)."""
        plan = BatchPlan()
        for r in rows:
            n = r.num_uncomputed_tokens
            if not kv.can_allocate(n, reserve):
                if not self.batch and not kv.can_ever_allocate(max(n, reserve)):
                    self.waiting.remove(r)
                    plan.rejected.append((r, f"reservation of {max(n, reserve)} tokens exceeds "
                                             f"the KV capacity ({kv.capacity_tokens})"))
                    continue
                break
            self._admit(r, kv, n, reserve)
            self.batch.append(r)
            plan.prefills.append((r, n))
        if not plan.prefills:
            return plan
        longest = max(q for _, q in plan.prefills)
        if self.cfg.padded:
            self.padded_prompt_tokens = plan.padded_prompt_tokens = longest
        if max_length is not None:
            for r, _ in plan.prefills:
                cap_new_tokens(r, max_length - longest)
        return plan

    def _release_idle_kv(self, kv: KVCache) -> bool:
        """Finished rows only pad from here on: their KV goes before any row is preempted."""
        held = [r for r in self.done if kv.holds(r.request_id)]
        for r in held:
            kv.free(r.request_id)
        return bool(held)

    def _preempt(self, victim: Request, kv: KVCache, mode: str) -> str:
        self.batch.remove(victim)
        return super()._preempt(victim, kv, mode)

    def on_step_end(self, done: list[Request], kv: KVCache) -> list[Request]:
        for r in done:
            self.running.remove(r)
            self.done.append(r)
        batch_over = not self.running
        if self.cfg.release_at_batch_end:
            released = list(self.done) if batch_over else []
        else:
            released = list(done)
        if batch_over:  # free the whole batch's KV at once
            for r in self.batch:
                kv.free(r.request_id)
            self.batch, self.done, self.padded_prompt_tokens = [], [], 0
        return released
