"""OmniServe-style LS/BE co-location with CPU attention offload: policies.md section 9.

NOTE (section 9.2, per-iteration priority): LS decodes > LS chunked prefill > BE chunked prefill
> BE decode. The LS prefill chunk is the largest that keeps the predicted step within the
running LS requests' TPOT SLO (binary search on the latency model); BE prefill chunks and
GPU-resident BE decodes get the stricter ``be_margin`` so that piggybacking has room. BE requests
whose KV is in host memory advance layer by layer through CPU attention and piggyback on later
GPU passes (``llmsim.cluster.offload``); the per-layer piggyback count is the largest that keeps
the predicted step within the LS bound (the room ``be_margin`` left). Under LS memory pressure GPU-resident BE requests move
to the host (or are preempted by recompute when the host is full or offload is off); when the
GPU has room again, offloaded BE requests move back at a token boundary. LS admission control
predicts a new request's TTFT from the queued LS prefill tokens and the decode load and rejects
it early when it would miss its SLO (rejections count as misses).

[ASSUMPTION] knobs: ``ls_kv_headroom`` (GPU KV fraction BE may not take), ``be_margin`` (0.8),
one piggyback cap shared by all layers (the paper raises k_l greedily from the bottom layer;
with equal per-layer dense cost that reaches the same total), KV moves over PCIe at the GPU's
``pcie_gbps``. Baselines as configurations (scenarios/omniserve-*.yaml): Sarathi-Serve with LS
priority is ``offload: none, step_budget: tokens`` (a fixed chunk budget, BE gets the
leftovers); NEO-like is ``offload: pipelined`` (CPU attention in lockstep, the GPU waits; SLO
control kept, as the paper added it); Llumnix + CPU vLLM is ``offload: none, step_budget: tokens``
with a whole-prompt budget (vLLM-like, no SLO-aware sizing) and BE that finds no GPU headroom
served by CPU-only engines (``cluster.cpu_engines``).
"""
from __future__ import annotations

import math
from collections import deque

from llmsim.batch import BatchPlan
from llmsim.cluster.kv_cache import KVCache
from llmsim.policies.omniserve_host import BE, LS, BEHostMoves, OmniServeConfig
from llmsim.request import Request, RequestStatus, ServiceClass

__all__ = ["OmniServeConfig", "OmniServePolicy"]




class OmniServePolicy(BEHostMoves):
    name = "omniserve"
    cite = ("OmniServe: CPU-GPU attention piggybacking for hybrid loads, SIGMOD 2026 (arXiv "
            "2603.12831)")
    Config = OmniServeConfig
    prefix_caching = True

    def __init__(self, config, limits) -> None:
        super().__init__(config, limits)
        self.be_waiting: deque[Request] = deque()
        self._unchecked: list[Request] = []  # LS arrivals admission control has not seen yet
        self._now_s, self._moved = 0.0, False

    # ---- queues --------------------------------------------------------------------------
    def enqueue(self, r: Request) -> None:
        r.status = RequestStatus.WAITING
        self._queue_of(r).append(r)
        if r.service_class == LS and math.isfinite(r.ttft_slo_s):
            self._unchecked.append(r)

    def _queue_of(self, r: Request) -> deque[Request]:
        return self.waiting if r.service_class == LS else self.be_waiting

    @property
    def num_waiting(self) -> int:
        return len(self.waiting) + len(self.be_waiting)

    @property
    def num_outstanding(self) -> int:
        return self.num_waiting + self.num_running

    @property
    def num_running(self) -> int:
        return len(self.running) + (len(self.offload) if self.offload is not None else 0)

    def admits_best_effort(self, r: Request, kv: KVCache) -> bool:
        """Whether a BE arrival may use this GPU (Llumnix-style overflow asks before routing)."""
        need = kv.blocks_for(r.prompt_tokens + 1)
        return (kv.num_free_blocks - need >= self._headroom_blocks(kv)
                and not self.be_waiting and len(self.running) < self.cfg.max_num_seqs)

    def on_step_end(self, done: list[Request], kv: KVCache) -> list[Request]:
        for r in done:
            if kv.holds(r.request_id):
                self.running.remove(r)
                kv.free(r.request_id)
            else:
                self._host().remove(r)
        return done

    # ---- one step ------------------------------------------------------------------------
    def schedule(self, kv: KVCache, now_s: float) -> BatchPlan:
        self._now_s, self._moved = now_s, False
        # identical decode steps only while nothing but LS decodes runs: BE decodes are cut to
        # a budget that the growing context changes, offloaded rows move every step
        plan = BatchPlan(fusable=(self.offload is None or not len(self.offload)) and not any(
            r.service_class == BE for r in self.running))
        ls_bound = self._ls_bound_s() if self.cfg.step_budget == "slo" else math.inf
        be_bound = ls_bound * self.cfg.be_margin
        ls_dec = [r for r in self.running if r.service_class == LS and not r.is_prefilling]
        plan.decodes = self._ensure_decode_slots(kv, plan, "recompute", ls_dec)
        if self._unchecked:
            if self.cfg.admission_control:
                self._admission_control(plan, now_s)
            self._unchecked.clear()
        self._prefill(plan, kv, LS, ls_bound if plan.decodes else math.inf, now_s)
        self._prefill(plan, kv, BE, be_bound, now_s)
        tight = self._be_decodes(plan, kv, be_bound, now_s)
        if self.offload is not None:
            if not tight:
                self._move_back(plan, kv, now_s, be_bound)
            self._piggyback(plan, now_s, ls_bound)  # the room be_margin left free
            if plan.is_empty:
                plan.wake_at_s = self.offload.next_ready_s()
        if plan.is_empty and self._moved:
            plan.wake_at_s = now_s  # requests moved off the GPU: plan again with the room
        return plan

    def _ls_bound_s(self) -> float:
        slos = [r.tpot_slo_s for r in self.running if r.service_class == LS and
                math.isfinite(r.tpot_slo_s)]
        return min(slos) if slos else self.cfg.default_tpot_slo_s

    def _largest_chunk(self, plan: BatchPlan, r: Request, cap: int, bound_s: float) -> int:
        """Largest prefill chunk of ``r`` (<= cap) that keeps the step within ``bound_s``."""
        ctx = r.num_computed_tokens
        if cap <= 0 or self._time_s(plan, (cap, ctx)) <= bound_s:
            return max(cap, 0)
        lo, hi = 0, cap  # fits(lo), not fits(hi)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if self._time_s(plan, (mid, ctx)) <= bound_s else (lo, mid)
        return lo

    def _prefill(self, plan: BatchPlan, kv: KVCache, cls: ServiceClass, bound_s: float,
                 now_s: float) -> None:
        budget = self.cfg.max_num_batched_tokens - sum(q for _, q in plan.prefills)
        ongoing = [r for r in self.running if r.service_class == cls and r.is_prefilling]
        queue = self.waiting if cls == LS else self.be_waiting
        while budget > 0:
            if ongoing:
                r = ongoing.pop(0)
            elif queue and len(self.running) < self.cfg.max_num_seqs and self._admit_new(
                    queue[0], kv, cls):
                r = queue[0]
            else:
                return
            todo = r.num_uncomputed_tokens  # less its prompt's cached blocks, if admitted now
            if r.status == RequestStatus.WAITING:
                todo -= kv.cached_prefix_tokens(r.prefix_hashes, todo)
            n = self._largest_chunk(plan, r, min(budget, todo), bound_s)
            if n == 0:
                return
            if r.status == RequestStatus.WAITING:
                self._admit(r, kv, r.num_uncomputed_tokens)
            plan.prefills.append((r, n))
            budget -= n

    def _admit_new(self, r: Request, kv: KVCache, cls: ServiceClass) -> bool:
        need = r.num_uncomputed_tokens
        if cls == BE:  # above the LS headroom, unless the GPU would otherwise sit idle
            return (kv.num_free_blocks - kv.blocks_for(need) >= self._headroom_blocks(kv)
                    or (not self.running and kv.can_allocate(need)))
        while not kv.can_allocate(need, prefix=r.prefix_hashes):  # LS takes memory from BE first
            if not self._release_idle_kv(kv):
                return False
        return True

    def _be_decodes(self, plan: BatchPlan, kv: KVCache, bound_s: float, now_s: float) -> bool:
        """GPU-resident BE decodes, FCFS, as many as the BE bound allows; the rest continue on
        the CPU when offload is on (else they wait). Returns whether the bound was reached."""
        cands = [r for r in self.running if r.service_class == BE and not r.is_prefilling
                 and r.kv_ready_s <= now_s]  # KV not still on its way back
        if not cands:
            return False
        base = len(plan.decodes)

        def fits(m: int) -> bool:
            plan.decodes[base:] = cands[:m]
            return self._time_s(plan) <= bound_s

        m = len(cands)
        if not fits(m):
            lo, hi = 0, m
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if fits(mid) else (lo, mid)
            m = max(lo, 1 if not plan.prefills and not base else 0)  # an idle GPU progresses
        del plan.decodes[base:]
        # with a host to go to, BE leaves the GPU before LS would find it full
        low_kv = (self.offload is not None
                  and kv.num_free_blocks <= self._headroom_blocks(kv) // 2)
        for r in cands[:m]:
            if kv.can_append(r.request_id) and not (low_kv and self._to_host(r, kv, now_s)):
                kv.append(r.request_id)
                plan.decodes.append(r)
            elif kv.holds(r.request_id):
                self._evict(r, kv, now_s)  # cannot grow: to the host, else recompute later
        if self.offload is not None:
            for r in cands[m:]:  # over the step budget: continue on the CPU if a host has room
                self._to_host(r, kv, now_s)  # (else wait here: recomputing would waste more)
        return m < len(cands)

    # ---- LS admission control ------------------------------------------------------------
    def _admission_control(self, plan: BatchPlan, now_s: float) -> None:
        """Predict each new LS arrival's TTFT: the LS prefill tokens queued up to and including
        it, in steps of ``max_num_batched_tokens`` at the current decode load. Runs only on steps
        that follow arrivals; admitted requests are never re-judged."""
        new = {id(r) for r in self._unchecked}
        queued = sum(r.num_uncomputed_tokens for r in self.running
                     if r.service_class == LS and r.is_prefilling)
        chunk = self.cfg.max_num_batched_tokens
        rejected = []
        for r in self.waiting:
            queued += r.num_uncomputed_tokens
            if id(r) not in new:
                continue
            step_s = self._time_s(plan, (min(chunk, queued), 0))
            predicted_s = (now_s - r.arrival_s) + math.ceil(queued / chunk) * step_s
            if predicted_s > r.ttft_slo_s:
                queued -= r.num_uncomputed_tokens
                rejected.append(r)
                plan.rejected.append((r, f"admission control: predicted TTFT {predicted_s:.2f}"
                                         f" s > SLO {r.ttft_slo_s:.2f} s"))
        for r in rejected:
            self.waiting.remove(r)
