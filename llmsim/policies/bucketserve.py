"""BucketServe: bucket-based dynamic batching on a disaggregated prefill side: policies.md §8.

Waiting requests live in length buckets ``[lo, up)`` over prompt tokens, starting from one
``[0, L_max)``. Before forming each prefill batch the controller computes the memory-safe batch
size ``N_max`` from free KV memory (``M_safe = safety x M_remain``, Eq. 5-6), then
(Algorithm 1) merges everything back into one bucket under low load (fewer than ``N_max``
waiting), or else splits, once per invocation, each bucket holding more than ``N_max`` requests
whose lower half (below the midpoint) holds the majority. Online requests: the bucket holding the
oldest waiting request goes next, FCFS inside it; best-effort (offline) requests go after all
online ones, shortest (SJF) or longest (LJF) bucket first. Decode runs elsewhere with continuous
batching (``distserve_decode`` with ``waiting_block_prop_threshold: 1.0`` is vLLM-like).
"""
from __future__ import annotations

import bisect
from typing import Literal

from pydantic import Field

from llmsim.batch import BatchPlan
from llmsim.cluster.kv_cache import KVCache
from llmsim.policies.config import PolicyConfigBase
from llmsim.policies.distserve import PrefillOnly
from llmsim.request import Request, ServiceClass


class BucketServeConfig(PolicyConfigBase):
    RENAMED = {"max_tokens_per_batch": "max_num_batched_tokens"}
    kind: Literal["bucketserve"] = "bucketserve"
    max_len_tokens: int | None = Field(None, gt=0, description="L_max; default max_model_len")
    safety: float = Field(0.9, gt=0, le=1, description="M_safe = safety x M_remain (Eq. 5)")
    accounting: Literal["max", "sum"] = Field(
        "max", description="N_max from N x max(S) (padded, default) or from sum(S) (Eq. 6)")
    split_rule: Literal["literal_lower_majority", "either_half_majority"] = "literal_lower_majority"
    max_split_passes: int = Field(1, gt=0)
    offline_order: Literal["sjf", "ljf"] = "sjf"
    max_num_batched_tokens: int | None = Field(None, gt=0, description="optional engine token cap")
    padded_prefill: bool = Field(False, description="run each bucket batch padded to its longest prompt")


class BucketServePolicy(PrefillOnly[BucketServeConfig]):
    name = "bucketserve"
    cite = "BucketServe: Bucket-Based Dynamic Batching, arXiv 2507.17120"
    roles = frozenset({"prefill"})
    Config = BucketServeConfig
    prefix_caching = True  # admits through DistServe's prefix-aware ``_admit_prefills``

    def __init__(self, config, limits) -> None:
        super().__init__(config, limits)
        self.l_max = config.max_len_tokens or limits.max_model_len
        self.bounds: list[tuple[int, int]] = [(0, self.l_max)]
        self.num_splits = self.num_merges = 0

    # ---- Algorithm 1 -----------------------------------------------------------------------
    def n_max(self, kv: KVCache, lengths: list[int]) -> int:
        """Largest N such that the N first requests fit the safe share of free KV memory."""
        safe_tokens = self.cfg.safety * kv.num_admissible_tokens  # M_safe = 0.9 M_remain
        n, top, total = 0, 0, 0
        for s in lengths:
            top, total = max(top, s), total + s
            if (self.cfg.accounting == "max" and (n + 1) * top > safe_tokens) or \
                    (self.cfg.accounting == "sum" and total > safe_tokens):
                break
            n += 1
        return n

    def buckets(self) -> list[list[Request]]:
        """Waiting requests per bucket; prompts at L_max or beyond go to the last bucket.
        ``waiting`` is in arrival order, so each bucket is FCFS."""
        lows = [lo for lo, _ in self.bounds]
        out: list[list[Request]] = [[] for _ in self.bounds]
        for r in self.waiting:
            out[bisect.bisect_right(lows, r.num_uncomputed_tokens) - 1].append(r)
        return out

    def control(self, n_max: int) -> list[list[Request]]:
        """NOTE (BucketServe Alg. 1): merge all under low load; otherwise split each bucket with
        more than N_max requests whose lower half holds the majority, at its midpoint.
        Returns the waiting requests per resulting bucket."""
        if len(self.waiting) < n_max:
            if len(self.bounds) > 1:
                self.num_merges += 1
            self.bounds = [(0, self.l_max)]
            return [list(self.waiting)]
        members_by_bucket = self.buckets()
        for _ in range(self.cfg.max_split_passes):
            new, split_any = [], False
            for (lo, up), members in zip(self.bounds, members_by_bucket):
                mid = (lo + up) // 2
                lower = sum(1 for r in members if r.num_uncomputed_tokens < mid)
                skewed = lower / len(members) > 0.5 if members else False
                if self.cfg.split_rule == "either_half_majority" and members:
                    skewed = skewed or (len(members) - lower) / len(members) > 0.5
                if len(members) > n_max and skewed and mid > lo:
                    new += [(lo, mid), (mid, up)]
                    split_any = True
                else:
                    new.append((lo, up))
            self.bounds = new
            self.num_splits += split_any
            if not split_any:
                break
            members_by_bucket = self.buckets()
        return members_by_bucket

    def choose_bucket(self, buckets: list[list[Request]]) -> list[Request]:
        online = [b for b in buckets if any(r.service_class == ServiceClass.LATENCY_SENSITIVE for r in b)]
        if online:  # the bucket holding the oldest online request
            return min(online, key=lambda b: min(r.arrival_s for r in b
                                                 if r.service_class == ServiceClass.LATENCY_SENSITIVE))
        nonempty = [(i, b) for i, b in enumerate(buckets) if b]
        i, b = (min if self.cfg.offline_order == "sjf" else max)(nonempty, key=lambda ib: ib[0])
        return b

    # ---- one prefill step ------------------------------------------------------------------
    def schedule(self, kv: KVCache, now_s: float) -> BatchPlan:
        if not self.waiting:
            return BatchPlan()
        lengths = sorted(r.num_uncomputed_tokens for r in self.waiting)
        bucket = self.choose_bucket(self.control(max(1, self.n_max(kv, lengths))))
        online_first = sorted(bucket, key=lambda r: (r.service_class, r.arrival_s))
        n_cap = self.n_max(kv, [r.num_uncomputed_tokens for r in online_first])
        idle = not self.running and not self.num_unaccepted  # no KV will be freed by waiting
        if idle:  # the safe share must not hold back a request that fits the whole pool
            n_cap = max(n_cap, 1)
        plan = self._admit_prefills(kv, online_first, n_cap, self.cfg.max_num_batched_tokens)
        if idle and not plan.prefills:  # the pool is as free as it gets: it never fits here
            r = online_first[0]
            self.waiting.remove(r)
            plan.rejected.append((r, f"prompt of {r.num_uncomputed_tokens} tokens exceeds the "
                                     f"admissible KV of an idle prefill instance "
                                     f"({kv.num_admissible_tokens} tokens)"))
            return plan
        if self.cfg.padded_prefill and plan.prefills:
            plan.padded_prompt_tokens = max(q for _, q in plan.prefills)
        return plan
