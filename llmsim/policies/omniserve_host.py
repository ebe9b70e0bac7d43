"""OmniServe's best-effort memory moves: BE requests leave the GPU for host memory (CPU
attention) under LS pressure, come back at a token boundary, and piggyback their dense work on
GPU passes (policies.md section 9; the mechanism is ``llmsim.cluster.offload``).
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from llmsim.batch import BatchPlan
from llmsim.cluster.kv_cache import KVCache
from llmsim.cluster.offload import CPUOffload, OffloadStep
from llmsim.latency.base import StepShape
from llmsim.policies.base import Policy
from llmsim.policies.config import PolicyConfigBase
from llmsim.request import Request, RequestStatus, ServiceClass

LS, BE = ServiceClass.LATENCY_SENSITIVE, ServiceClass.BEST_EFFORT


class OmniServeConfig(PolicyConfigBase):
    RENAMED = {"max_chunk_tokens": "max_num_batched_tokens"}
    kind: Literal["omniserve"] = "omniserve"
    offload: Literal["layerwise", "pipelined", "none"] = Field(
        "layerwise", description="BE attention offload: OmniServe piggybacking, NEO-like "
        "lockstep, or none (GPU only); needs cluster.host unless none")
    same_iteration_catchup: bool = Field(False, description="a CPU result back before the GPU "
                                         "leaves that layer is consumed in the same pass")
    admission_control: bool = True
    default_tpot_slo_s: float = Field(0.2, gt=0, description="step bound when no running LS "
                                      "request carries a TPOT SLO")
    be_margin: float = Field(0.8, gt=0, le=1, description="BE work fills a step only up to this "
                             "fraction of the LS bound")
    step_budget: Literal["slo", "tokens"] = Field(
        "slo", description="slo: steps sized by the latency model to the LS TPOT SLO (OmniServe); "
        "tokens: a fixed token budget of max_num_batched_tokens per step, no time bound (Sarathi-Serve "
        "with a small budget, vLLM-like whole prefills with a large one)")
    max_num_batched_tokens: int = Field(2048, gt=0)
    max_num_seqs: int = Field(256, gt=0, description="GPU-resident requests")
    ls_kv_headroom: float = Field(0.1, ge=0, lt=1, description="GPU KV fraction BE may not take")
    max_piggyback_per_layer: int = Field(512, ge=0)
    host_reserve_tokens: int = Field(512, ge=0, description="host room a request needs beyond "
                                     "its KV when it moves there (growth)")


class BEHostMoves(Policy[OmniServeConfig]):
    """The BE side of OmniServe: where a BE request's KV lives, and what a step costs."""

    _now_s: float = 0.0
    _moved: bool = False  # requests left the GPU this step: plan again with the room

    def _time_s(self, plan: BatchPlan, extra_chunk: tuple[int, int] | None = None,
                dense_only_tokens: float = 0.0) -> float:
        s = plan.shape()
        chunks = s.prefill_chunks + ((extra_chunk,) if extra_chunk else ())
        return self.latency.step_time_s(StepShape(chunks, s.num_decode_seqs, s.decode_context_sum,
                                                  s.decode_context_max, False, dense_only_tokens))

    def _headroom_blocks(self, kv: KVCache) -> int:
        return max(kv.watermark_blocks, int(self.cfg.ls_kv_headroom * kv.num_blocks))

    def _host(self) -> CPUOffload:
        """The host CPU pool (offload modes other than ``none`` are bound to one)."""
        assert self.offload is not None
        return self.offload

    # ---- BE memory moves -----------------------------------------------------------------
    def _release_idle_kv(self, kv: KVCache) -> bool:
        """LS needs GPU memory: move the last-arrived GPU-resident BE request out."""
        for r in reversed(self.running):
            if r.service_class == BE:
                self._evict(r, kv, self._now_s)
                return True
        return False

    def _to_host(self, r: Request, kv: KVCache, now_s: float) -> bool:
        """Move a decoding BE request's KV to a host with room; it continues there."""
        if self.offload is None or r.is_prefilling:
            return False
        pool = self.offload.pick_pool(r.num_computed_tokens, self.cfg.host_reserve_tokens)
        if pool < 0:
            return False
        self.running.remove(r)
        kv.free(r.request_id)
        self._moved = True
        r.status = RequestStatus.SWAPPED
        self.offload.add(r, pool, now_s + r.num_computed_tokens * self.kv_move_s_per_token)
        return True

    def _evict(self, r: Request, kv: KVCache, now_s: float) -> None:
        """Free ``r``'s GPU KV: to a host with room, else preempt it by recompute."""
        if not self._to_host(r, kv, now_s):
            self._preempt(r, kv, "recompute")  # to the front of the BE queue
            self._moved = True

    def _move_back(self, plan: BatchPlan, kv: KVCache, now_s: float, bound_s: float) -> None:
        """GPU memory and step time to spare: offloaded BE requests return to the GPU between
        two tokens, as many as would fit this step's BE bound as decodes."""
        for r in self._host().at_token_boundary():
            need = r.num_computed_tokens + 1
            if (len(self.running) >= self.cfg.max_num_seqs or kv.num_free_blocks
                    - kv.blocks_for(need) < 2 * self._headroom_blocks(kv)):
                return
            plan.decodes.append(r)
            fits = self._time_s(plan) <= bound_s
            plan.decodes.pop()
            if not fits:
                return
            self._host().remove(r)
            kv.allocate(r.request_id, r.num_computed_tokens)
            r.kv_ready_s = now_s + r.num_computed_tokens * self.kv_move_s_per_token
            r.status = RequestStatus.RUNNING
            self._insert_running(r)

    def _piggyback(self, plan: BatchPlan, now_s: float, bound_s: float) -> None:
        base_s = self._time_s(plan) if not plan.is_empty else 0.0
        hi = self.cfg.max_piggyback_per_layer
        step = OffloadStep(self._host(), now_s, base_s, hi)
        if not step.num_rows:
            return
        fits = lambda k: step.with_cap(k).duration_s(  # noqa: E731
            self._time_s(plan, dense_only_tokens=step.dense_only_tokens)) <= bound_s
        if not fits(hi):
            lo = 0  # fits(lo) or lo == 0, not fits(hi)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if fits(mid) else (lo, mid)
            step.with_cap(max(lo, 1 if plan.is_empty else 0))  # an idle GPU always progresses
        if step.num_rows:
            plan.offload = step
