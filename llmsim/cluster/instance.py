"""One model replica (a TP group) as a SimPy process.

The loop: ask the policy for a batch -> spend the latency model's time -> apply -> record.
A decode-only plan that the policy marks fusable is run as one *run* of identical steps, ended at
the first request finish, before KV runs short, or at the first step boundary after a new
arrival, so the simulation costs O(events), not O(iterations); results match step-by-step
execution (``simulation.fuse_decode_steps: false``) exactly, up to float rounding.
"""
from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
import simpy

from llmsim.batch import BatchPlan, apply_steps, mark_finished
from llmsim.cluster.clock import WAKE, at, defer, quantize, quantize_all, run_ends
from llmsim.cluster.kv_cache import KVCache
from llmsim.errors import SimulationStuck
from llmsim.latency.base import LatencyModel, StepShape
from llmsim.latency.domain import DomainTally
from llmsim.metrics.recorder import Recorder
from llmsim.policies.base import Policy
from llmsim.policies.roles import DecodeSide, PrefillSide
from llmsim.request import Request, RequestStatus

# turns at one instant with nothing new (no step, rejection or arrival): past this, the policy
# is spinning, not deciding
MAX_IDLE_TURNS = 1_000
Ends = tuple[float] | np.ndarray  # one step's end instant, or a fused run's


def _side(policy: Policy, protocol: type) -> Any:
    if not isinstance(policy, protocol):
        raise TypeError(f"policy {policy.name} declares a role whose {protocol.__name__} "
                        "methods it lacks")
    return policy


def never_fits(r: Request, max_model_len: int, kv: KVCache) -> str:
    """Why an instance with this KV cache can never serve ``r`` (rejected on arrival), or ''."""
    total = r.prompt_tokens + r.output_tokens
    if total > max_model_len:
        return f"prompt+output ({total} tokens) exceeds max_model_len ({max_model_len})"
    if not kv.can_ever_allocate(total):
        return f"needs {total} KV tokens, instance capacity is {kv.capacity_tokens}"
    return ""


class Instance:
    def __init__(self, env: simpy.Environment, instance_id: int, policy: Policy, kv: KVCache,
                 latency: LatencyModel, recorder: Recorder, on_final: Callable[[Request], None],
                 max_model_len: int, fuse_decode_steps: bool = True, max_run_steps: int = 4096,
                 role: str = "colocated"):
        self.env, self.instance_id, self.policy, self.kv = env, instance_id, policy, kv
        self.role = role  # colocated | prefill | decode
        self.group = role  # its instance group (``Scenario.sides``): its GPU, TP and PP
        self.speed = 1.0  # relative speed, for routers that weigh load by it (least_work)
        # a side of a disaggregated cluster talks to its policy through that side's protocol
        self._prefill = _side(policy, PrefillSide) if role == "prefill" else None
        self._decode = _side(policy, DecodeSide) if role == "decode" else None
        # Disaggregation seams: a prefill instance hands requests whose prompt is done to
        # ``on_handoff``; a decode instance pulls offered requests from ``inbox`` (its policy
        # decides when) and asks ``start_transfer`` to move their KV.
        self.on_handoff: Callable[[Instance, Request], None] | None = None
        self.start_transfer: Callable[[Request, Instance, Instance], None] | None = None
        self.inbox: deque[tuple[Request, Instance]] = deque()
        # told this instance's num_outstanding whenever it may have changed (a router's index)
        self.on_load: Callable[[int], None] | None = None
        self.latency, self.recorder, self._on_final = latency, recorder, on_final
        # busy time priced outside the range the cost model was measured on (None: analytic)
        domain = latency.domain()
        self.domain_tally = DomainTally(domain) if domain is not None else None
        self.max_model_len = max_model_len
        self.fuse, self.max_run_steps = fuse_decode_steps, max_run_steps
        self._wake = env.event()
        self._wake_pending = False
        self._run: tuple[float, np.ndarray, list[int]] | None = None  # a fused run in flight
        self._run_ids: list[int] = []  # the request ids of the last fused run planned
        self._news = 0  # arrivals, offers and KV landings so far: what may change a decision
        self._idle_turns: tuple[float, int, int] = (-1.0, -1, 0)  # (instant, news, turns)
        self._admitted = (0, 0, 0)  # this plan's (cached, host-, disk-loaded) prompt tokens
        self.kv_load_s_per_token = 0.0  # host tier -> GPU (set by the topology's builder)
        self.kv_disk_load_s_per_token = 0.0  # disk tier -> GPU (through host memory)
        env.process(self.run())

    # ---- called by the topology ----------------------------------------------------------
    def enqueue(self, r: Request) -> None:
        r.instance_id = self.instance_id
        reason = self._never_fits(r)
        if reason:
            self._reject(r, reason)
            return
        self.policy.enqueue(r)
        self._note_load()
        self._wake_up()

    def _note_load(self) -> None:
        if self.on_load is not None:
            self.on_load(self.num_outstanding)

    def _wake_up(self) -> None:
        """An input arrived: react once this instant's inputs are all in (``clock.WAKE``)."""
        self._news += 1
        if not self._wake_pending:
            self._wake_pending = True
            defer(self.env, self._wake_now, priority=WAKE)

    def _wake_now(self) -> None:
        self._wake_pending = False
        if not self._wake.triggered:
            self._wake.succeed()

    def offer(self, r: Request, source: Instance) -> None:
        """A prefilled request whose KV waits on ``source`` for this decode instance to pull."""
        self.inbox.append((r, source))
        self._note_load()
        self._wake_up()

    def receive(self, r: Request) -> None:
        """The KV transfer of ``r`` finished: it joins this instance's decodes."""
        assert self._decode is not None
        r.decode_instance_id = self.instance_id
        self._decode.receive(r, self.kv)
        self._note_load()
        self._wake_up()

    def release(self, r: Request) -> None:
        """The decode side holds ``r``'s KV now: free it here (relieves back-pressure)."""
        assert self._prefill is not None
        self.kv.free(r.request_id)
        self._prefill.forget(r)
        self._note_load()
        self._wake_up()

    def _pull(self) -> None:
        decode = self._decode
        assert decode is not None
        while self.inbox and decode.can_accept(self.inbox[0][0], self.kv):
            r, source = self.inbox.popleft()
            decode.accept(r, self.kv)
            assert self.start_transfer is not None  # a decode instance of a topology
            self.start_transfer(r, source, self)
        self._note_load()

    @property
    def num_outstanding(self) -> int:
        return self.policy.num_outstanding + len(self.inbox)

    def cached_prefix_tokens(self, r: Request) -> int:
        """Tokens of ``r``'s prompt this instance's prefix cache holds now (cache-aware routing)."""
        return self.kv.cached_prefix_tokens(r.prefix_hashes, r.prompt_tokens)

    def kv_usage_now(self) -> float:
        """KV blocks in use as a step-by-step engine would hold them at ``now``."""
        used = self.kv.num_used_blocks
        if self._run is not None:
            _, ends, ids = self._run
            step = int(np.searchsorted(ends, self.env.now, side="right")) + 1
            used += self.kv.blocks_needed_for_appends(ids, min(step, len(ends)) - 1)
        return used / self.kv.num_blocks

    # ---- the loop ------------------------------------------------------------------------
    def describe(self) -> str:
        """One line of state, for a simulation that cannot progress."""
        p = self.policy
        oldest = p.waiting[0] if p.waiting else None
        head = (f"; oldest waiting: request {oldest.request_id} ({oldest.prompt_tokens} prompt "
                f"tokens, arrived {oldest.arrival_s:.3f} s)" if oldest is not None else "")
        return (f"instance {self.instance_id} ({self.role}, policy {p.name}): {p.num_waiting} "
                f"waiting, {p.num_running} running, {len(self.inbox)} offered, KV "
                f"{self.kv.num_used_blocks}/{self.kv.num_blocks} blocks used{head}")

    def _count_idle_turn(self) -> None:
        """An empty plan: fine, unless it repeats at one instant with nothing new."""
        now, news = self.env.now, self._news
        at, seen, turns = self._idle_turns
        turns = turns + 1 if (at, seen) == (now, news) else 1
        self._idle_turns = (now, news, turns)
        if turns > MAX_IDLE_TURNS:
            raise SimulationStuck(f"simulation stuck at t={now:.6f} s: the policy keeps asking to "
                                  f"be woken now without scheduling anything; {self.describe()}")

    def run(self):
        while True:
            if self.inbox:
                self._pull()
            plan = self.policy.schedule(self.kv, self.env.now)
            self._admitted = self.kv.take_admitted()
            for r, reason in plan.rejected:
                self._reject(r, reason)
            if plan.rejected:
                self._note_load()
            if plan.is_empty:
                if not plan.rejected:
                    self._count_idle_turn()
                    yield from self._idle(plan.wake_at_s)
                continue
            start_s, shape = self.env.now, plan.freeze()
            ends = self._end_times_s(plan, shape)
            num_steps = yield from self._spend(plan, ends)
            self.latency.advance(shape, num_steps)  # stateful cost models update
            if num_steps > 1:  # every row waits each later step of the run for its next token
                self.recorder.token_gaps.add_run(ends, num_steps, len(plan.decodes))
            self._apply(plan, num_steps, start_s, float(ends[0]))

    def _idle(self, wake_at_s: float | None):
        self._wake = self.env.event()
        events = [self._wake]
        if wake_at_s is not None:
            events.append(at(self.env, max(wake_at_s, self.env.now)))
        yield self.env.any_of(events)

    def _end_times_s(self, plan: BatchPlan, shape: StepShape) -> Ends:
        """The absolute end instants of the step, or of a fused run of identical decode steps
        (``clock``: the instants step-by-step execution would reach). A single step, the
        common case, stays a plain float: no array per step."""
        steps = self._step_times_s(plan, shape)
        if isinstance(steps, float):
            return (self.env.now + quantize(steps),)
        return run_ends(self.env.now, quantize_all(steps))

    def _step_times_s(self, plan: BatchPlan, shape: StepShape) -> float | np.ndarray:
        k = 1
        if (self.fuse and plan.fusable and plan.is_decode_only and not plan.num_preempted
                and not plan.num_swapped_in):
            ids, left = [], self.max_run_steps
            for r in plan.decodes:  # one pass: the run's rows and its first finish
                ids.append(r.request_id)
                n = r.stop_after_tokens - r.num_generated_tokens
                if n < left:
                    left = n
            if left > 1:
                k = 1 + self.kv.max_uniform_appends(ids, left - 1)
                self._run_ids = ids
        if k == 1:
            t = self.latency.step_time_s(shape)
            t = t if plan.offload is None else plan.offload.duration_s(t)
            # prefix blocks found in the host tier are copied in before the step (blocking)
            return float(t + self._admitted[1] * self.kv_load_s_per_token
                         + self._admitted[2] * self.kv_disk_load_s_per_token)
        return self.latency.decode_run_step_times_s(shape, k)

    def _spend(self, plan: BatchPlan, ends: Ends):
        """Wait out the steps (``ends``: absolute instants). An input cuts a run at the end of
        the step in progress when it came (at a step's end instant, that of the next step:
        step-by-step execution would have started it before seeing the input)."""
        if len(ends) == 1:
            yield at(self.env, float(ends[0]))
            return 1
        assert isinstance(ends, np.ndarray)
        self._wake = self.env.event()
        self._run = (self.env.now, ends, self._run_ids)
        yield at(self.env, float(ends[-1])) | self._wake
        k = len(ends)
        if self.env.now < ends[-1]:
            k = min(k, int(np.searchsorted(ends, self.env.now, side="right")) + 1)
            yield at(self.env, float(ends[k - 1]))
        self._run = None
        return k

    def _apply(self, plan: BatchPlan, num_steps: int, start_s: float, first_end_s: float) -> None:
        now, gaps = self.env.now, self.recorder.token_gaps.pending
        if num_steps > 1:  # the policy claimed the first step's slots; claim the rest
            self.kv.append_each(self._run_ids, num_steps - 1)
        for r, _ in plan.prefills:
            if math.isnan(r.first_scheduled_s):
                r.first_scheduled_s = start_s
        done = apply_steps(plan, num_steps, now, first_end_s, gaps)
        if self.kv.prefix is not None:  # computed prompt blocks become shareable
            for r, _ in plan.prefills:
                self.kv.commit_prefix(r.request_id, r.num_computed_tokens, r.prefix_hashes)
            for r in done:  # and, where hashes name them, the blocks its answer filled
                if len(r.prefix_hashes) * self.kv.block_size > r.prompt_tokens:
                    self.kv.commit_prefix(r.request_id, r.num_computed_tokens, r.prefix_hashes)
        if plan.offload is not None:
            done += plan.offload.apply(start_s, now, gaps)
        for r in self.policy.on_step_end(done, self.kv):
            mark_finished(r, now)
            self._on_final(r)
        for r in self._prefill.take_handoffs() if self._prefill is not None else ():
            r.handoff_s = now
            assert self.on_handoff is not None  # a prefill instance of a topology
            self.on_handoff(self, r)
        self._note_load()
        if self.domain_tally is not None:
            self.domain_tally.add(plan.freeze(), num_steps, now - start_s)
        self.recorder.step(self.instance_id, start_s, now - start_s, num_steps, plan,
                           self.kv, self.policy, self.role, self._admitted)

    # ---- rejection -----------------------------------------------------------------------
    def _never_fits(self, r: Request) -> str:
        return never_fits(r, self.max_model_len, self.kv)

    def _reject(self, r: Request, reason: str) -> None:
        r.status = RequestStatus.REJECTED
        r.reject_reason = reason
        r.finish_s = self.env.now
        self._on_final(r)
