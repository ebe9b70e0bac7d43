"""The policy interface: one small, pure state machine per batching/scheduling policy.

An instance drives its policy with three calls: ``enqueue`` (an arrival was routed here),
``schedule`` (plan the next step) and ``on_step_end`` (these requests emitted their last token).
A policy for one side of a disaggregated cluster adds that side's protocol (``roles.py``).
A policy keeps its own queues, reads no clock but the ``now_s`` it is given, uses no RNG and does
no I/O; KV memory is only touched through the ``KVCache`` verbs.
"""
from __future__ import annotations

import bisect
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar

from llmsim.batch import BatchPlan
from llmsim.cluster.kv_cache import KVCache
from llmsim.policies.config import PolicyConfigBase
from llmsim.request import Request, RequestStatus

if TYPE_CHECKING:
    from llmsim.cluster.offload import CPUOffload
    from llmsim.latency.base import LatencyModel


@dataclass(frozen=True, slots=True)
class EngineLimits:
    """Facts about the engine a policy may rely on."""

    max_model_len: int
    block_size: int


ConfigT = TypeVar("ConfigT", bound=PolicyConfigBase)
ROLES = ("colocated", "prefill", "decode")


class Policy(ABC, Generic[ConfigT]):
    name: ClassVar[str]
    cite: ClassVar[str] = ""  # the paper or engine the policy follows (``llmsim policies``)
    Config: ClassVar[type[PolicyConfigBase]]
    # where the policy can run: "colocated" instances, or one side of a disaggregated cluster
    roles: ClassVar[frozenset[str]] = frozenset({"colocated"})
    # admits through the prefix-aware KV verbs (kv_cache.prefix_caching)
    prefix_caching: ClassVar[bool] = False
    # Mechanisms a policy may call (set by ``bind``): the instance's latency model, to predict a
    # step's time before choosing it; the host CPU offload, when the cluster has one.
    latency: LatencyModel  # set by ``bind`` before the first step
    offload: CPUOffload | None = None
    kv_move_s_per_token: float = 0.0  # GPU <-> host KV copy time per token

    def __init__(self, config: ConfigT, limits: EngineLimits) -> None:
        self.cfg: ConfigT = config
        self.limits = limits
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []  # kept sorted by arrival (FCFS priority)
        self.swapped: deque[Request] = deque()

    def bind(self, latency: LatencyModel, offload: CPUOffload | None = None,
             kv_move_s_per_token: float = 0.0) -> None:
        self.latency, self.offload, self.kv_move_s_per_token = latency, offload, kv_move_s_per_token

    # ---- the interface -------------------------------------------------------------------
    def enqueue(self, request: Request) -> None:
        request.status = RequestStatus.WAITING
        self.waiting.append(request)

    @abstractmethod
    def schedule(self, kv: KVCache, now_s: float) -> BatchPlan: ...

    def on_step_end(self, done: list[Request], kv: KVCache) -> list[Request]:
        """Requests in ``done`` emitted their last token; return those released now."""
        for r in done:
            self.running.remove(r)
            kv.free(r.request_id)
        return done

    # ---- read-only views for routers and records -----------------------------------------
    @property
    def num_waiting(self) -> int:
        return len(self.waiting) + len(self.swapped)

    @property
    def num_running(self) -> int:
        return len(self.running)

    @property
    def num_outstanding(self) -> int:
        # asked for every instance on every arrival by least-outstanding routing: one call
        # (a policy with other queues overrides it with them)
        return len(self.waiting) + len(self.swapped) + len(self.running)

    # ---- shared helpers ------------------------------------------------------------------
    def _queue_of(self, r: Request) -> deque[Request]:
        """The waiting queue ``r`` belongs to (policies with several override)."""
        return self.waiting

    def _admit(self, r: Request, kv: KVCache, num_tokens: int, reserve_tokens: int = 0) -> None:
        """Give a waiting request its KV and move it into ``running``; tokens of its prompt
        found in the prefix cache count as computed."""
        r.num_computed_tokens += kv.allocate(r.request_id, num_tokens, reserve_tokens,
                                             r.prefix_hashes, r.num_uncomputed_tokens)
        queue = self._queue_of(r)
        if queue[0] is r:
            queue.popleft()
        else:  # bucket/group policies admit from the middle of the queue
            queue.remove(r)
        r.status = RequestStatus.RUNNING
        self._insert_running(r)

    def _insert_running(self, r: Request) -> None:
        if not self.running or self.running[-1].arrival_s <= r.arrival_s:
            self.running.append(r)
        else:
            keys = [x.arrival_s for x in self.running]
            self.running.insert(bisect.bisect_right(keys, r.arrival_s), r)

    def _release_idle_kv(self, kv: KVCache) -> bool:
        """Free KV that no longer has to be kept before preempting anyone; True if any was."""
        return False

    def _preempt(self, victim: Request, kv: KVCache, mode: str) -> str:
        """Evict ``victim`` from ``running``; swap if asked and possible, else recompute."""
        self.running.remove(victim)
        victim.num_preemptions += 1
        if mode == "swap" and kv.can_swap_out(victim.request_id):
            kv.swap_out(victim.request_id)
            victim.status = RequestStatus.SWAPPED
            self.swapped.append(victim)
            return "swap"
        kv.free(victim.request_id)
        victim.num_recomputed_tokens += victim.num_computed_tokens
        victim.num_computed_tokens = 0
        victim.status = RequestStatus.WAITING
        self._queue_of(victim).appendleft(victim)  # recompute-preempted: to the front (vLLM)
        return "recompute"

    def _ensure_decode_slots(self, kv: KVCache, plan: BatchPlan, mode: str,
                             candidates: list[Request]) -> list[Request]:
        """Claim one KV slot for each candidate in FCFS order; while one cannot grow, preempt
        the last-arrived running request (possibly itself). Returns those that got a slot."""
        running = RequestStatus.RUNNING
        ids = [r.request_id for r in candidates if r.status == running]
        # the common case: every candidate runs and all grow without preempting anyone (one
        # pass over the tables; what the loop below would do, row by row)
        if len(ids) == len(candidates) and kv.try_append_each(ids):
            return list(candidates)
        got: list[Request] = []
        try_append = kv.try_append
        for r in candidates:
            if r.status == running and try_append(r.request_id):  # the common case: it grows
                got.append(r)
                continue
            while r.status == RequestStatus.RUNNING and not kv.can_append(r.request_id):
                if self._release_idle_kv(kv):
                    continue
                victim = self.running[-1]
                if self._preempt(victim, kv, mode) == "swap":
                    plan.num_swapped_out += 1
                plan.num_preempted += 1
                if victim in got:
                    got.remove(victim)
            if r.status == RequestStatus.RUNNING:
                kv.append(r.request_id)
                got.append(r)
        return got
