"""Host CPU attention offload (OmniServe, policies.md section 9.2-9.4): a mechanism policies call.

A best-effort request whose KV lives in host DRAM keeps its dense work (QKV, O-proj, MLP) on the
GPU and runs only attention on a CPU core pool. Two ways to stitch the two together:

``layerwise`` (OmniServe): a per-layer state machine. The request's QKV for layer l leaves the
GPU, the CPU computes attention for l over its host KV, and the result is *piggybacked* onto the
GPU's next pass over layer l (O-proj + MLP of l, then QKV of l+1, batched with that layer's
other tokens); the GPU never waits for the CPU. One output token takes L hops. Without
``same_iteration_catchup`` a hop's result is consumed no earlier than the next pass.

``pipelined`` (NEO-like): a selected request does a whole token per GPU iteration, its attention
for every layer on the CPU in lockstep with the GPU's layers; the iteration lasts as long as the
slower of the two.

State lives in numpy arrays (one row per offloaded request) so a step costs a few vector ops,
not a Python loop over requests and layers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llmsim.request import Request, emit_tokens

GIB = 1024**3


@dataclass(frozen=True, slots=True)
class CorePool:
    """Cores that run attention for the requests whose KV they hold (a host, or a CPU server)."""

    cores: int
    capacity_tokens: int
    hop_latency_s: float  # moving q/k/v in and the attention output back, plus queue handling


@dataclass(frozen=True, slots=True)
class Candidates:
    rows: np.ndarray  # indices into the offload arrays, FIFO
    rank: np.ndarray  # position among the candidates of the same layer (pipelined: overall)
    hops: np.ndarray  # layer hops each is expected to make in the pass (dense work)
    work: np.ndarray | None  # pipelined: CPU core-seconds of each one's token


@dataclass(slots=True)
class Selection:
    rows: np.ndarray  # indices into the offload arrays
    dense_only_tokens: float  # hops / L: whole-model tokens of dense work they add to the pass
    cpu_s: float = 0.0  # pipelined: CPU time the GPU has to wait out


class CPUOffload:
    """Offloaded requests of one instance, their host KV and their CPU attention jobs."""

    def __init__(self, pools: list[CorePool], num_layers: int, core_s_per_token_layer: float,
                 mode: str = "layerwise", same_iteration_catchup: bool = False) -> None:
        if mode not in ("layerwise", "pipelined"):
            raise ValueError(f"unknown offload mode {mode!r}")
        self.pools, self.num_layers, self.mode = pools, num_layers, mode
        self.core_s_per_token = core_s_per_token_layer  # one layer's attention, all heads
        self.catchup = same_iteration_catchup
        self.free_tokens = np.array([p.capacity_tokens for p in pools], dtype=np.int64)
        self._cores = np.array([p.cores for p in pools], dtype=float)
        self._hop_s = np.array([p.hop_latency_s for p in pools])
        self._pool_busy_until = np.zeros(len(pools))
        self.requests: list[Request] = []
        self.layer = np.zeros(0, dtype=np.int64)  # the layer whose piggyback the row waits for
        self.ready_s = np.zeros(0)  # when its CPU attention for that layer is back on the GPU
        self.ctx = np.zeros(0, dtype=np.int64)  # KV tokens its attention reads (host-resident)
        self.pool = np.zeros(0, dtype=np.int64)
        self.num_hops = 0  # piggybacked (or pipelined) layer hops so far, for records

    # ---- membership ----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.requests)

    def pick_pool(self, num_tokens: int, reserve_tokens: int) -> int:
        """The first pool (local host first, then CPU servers) with room, or -1."""
        for i, free in enumerate(self.free_tokens):
            if free >= num_tokens + reserve_tokens:
                return i
        return -1

    def add(self, r: Request, pool: int, kv_on_host_s: float) -> None:
        """``r``'s KV (``num_computed_tokens``) lands on ``pool`` at ``kv_on_host_s``; its next
        token starts with the attention of layer 0."""
        n = r.num_computed_tokens
        self.free_tokens[pool] -= n
        self.requests.append(r)
        self.layer = np.append(self.layer, 0)
        self.ctx = np.append(self.ctx, n + 1)
        self.pool = np.append(self.pool, pool)
        done = self._run_jobs(np.array([kv_on_host_s]), self.ctx[-1:], self.pool[-1:])
        self.ready_s = np.append(self.ready_s, done)

    def remove(self, r: Request) -> int:
        """Drop ``r`` (finished, or moving back to the GPU); returns its host KV tokens."""
        i = self.requests.index(r)
        tokens = int(self.ctx[i]) - 1
        self.free_tokens[self.pool[i]] += tokens
        del self.requests[i]
        keep = np.arange(len(self.layer)) != i
        self.layer, self.ready_s = self.layer[keep], self.ready_s[keep]
        self.ctx, self.pool = self.ctx[keep], self.pool[keep]
        return tokens

    def at_token_boundary(self) -> list[Request]:
        """Requests between two tokens (waiting on layer 0): the ones that may move to the GPU."""
        return [self.requests[i] for i in np.flatnonzero(self.layer == 0)]

    def next_ready_s(self) -> float | None:
        return float(self.ready_s.min()) if len(self.ready_s) else None

    # ---- one GPU pass --------------------------------------------------------------------
    def candidates(self, start_s: float, pass_s: float) -> Candidates:
        """Rows that could ride on a GPU pass starting at ``start_s`` and lasting about
        ``pass_s``, FIFO, each with its rank among its layer's candidates (pipelined: overall),
        so that any cap is a cheap filter (``take``)."""
        if self.mode == "pipelined":
            rows = np.flatnonzero(self.ready_s <= start_s)
            work = self.ctx[rows] * self.num_layers * self.core_s_per_token
            return Candidates(rows, np.arange(len(rows)), np.full(len(rows), self.num_layers),
                              work)
        layer_s = pass_s / self.num_layers
        # without catchup a result waits for the next pass to reach its layer; with it, it may
        # still be consumed until the GPU leaves that layer
        reach_s = start_s + (self.layer + self.catchup) * layer_s
        rows = np.flatnonzero(self.ready_s <= reach_s)
        hops = np.ones(len(rows), dtype=np.int64)
        if self.catchup and len(rows):
            # a row whose CPU round trip fits in one layer's GPU time keeps up with the pass to
            # its last layer: charge the dense work of every hop it is expected to make
            trip_s = (self.ctx[rows] * self.core_s_per_token / self._cores[self.pool[rows]]
                      + self._hop_s[self.pool[rows]])
            hops = np.where(trip_s <= layer_s, self.num_layers - self.layer[rows], 1)
        return Candidates(rows, _rank_in_group(self.layer[rows]), hops, None)

    def take(self, cand: Candidates, max_per_layer: int) -> Selection:
        """At most ``max_per_layer`` candidates per layer (pipelined: in all)."""
        keep = cand.rank < max_per_layer
        rows = cand.rows[keep]
        dense = float(cand.hops[keep].sum()) / self.num_layers
        if cand.work is None or not len(rows):
            return Selection(rows, dense)
        per_pool = np.bincount(self.pool[rows], weights=cand.work[keep], minlength=len(self.pools))
        cpu_s = float(np.max(per_pool / self._cores + (per_pool > 0) * self.num_layers
                             * self._hop_s))
        return Selection(rows, dense, cpu_s)

    def select(self, start_s: float, pass_s: float, max_per_layer: int) -> Selection:
        return self.take(self.candidates(start_s, pass_s), max_per_layer)

    def duration_s(self, sel: Selection, gpu_s: float) -> float:
        return max(gpu_s, sel.cpu_s) if self.mode == "pipelined" else gpu_s

    def apply(self, sel: Selection, start_s: float, end_s: float) -> list[Request]:
        """Advance the selected rows over a pass ``[start_s, end_s]``; returns the requests that
        emitted a token (their counters already advanced)."""
        rows = sel.rows
        if not len(rows):
            return []
        if self.mode == "pipelined":
            self.num_hops += len(rows) * self.num_layers
            self.ready_s[rows] = end_s
            self._grow(rows)
            return [self.requests[i] for i in rows]
        layer_s = (end_s - start_s) / self.num_layers
        wrapped = [self._hop(rows, start_s, end_s, layer_s)]
        while self.catchup and len(rows):
            # results back before the GPU leaves the row's next layer are consumed in this pass
            rows = rows[self.layer[rows] > 0]
            rows = rows[self.ready_s[rows] <= start_s + (self.layer[rows] + 1) * layer_s]
            wrapped.append(self._hop(rows, start_s, end_s, layer_s))
        done = np.concatenate(wrapped)
        return [self.requests[i] for i in done]

    def _hop(self, rows: np.ndarray, start_s: float, end_s: float, layer_s: float) -> np.ndarray:
        """One layer hop for ``rows``; returns those that finished their last layer (a token)."""
        self.num_hops += len(rows)
        nxt = self.layer[rows] + 1
        wrap = nxt == self.num_layers
        nxt[wrap] = 0
        self.layer[rows] = nxt
        self._grow(rows[wrap])
        # the next layer's QKV is computed as the GPU enters it (the next token's: as the next
        # pass starts), then leaves for the CPU
        submit_s = np.where(wrap, end_s, start_s + nxt * layer_s)
        self.ready_s[rows] = self._run_jobs(submit_s, self.ctx[rows], self.pool[rows])
        return rows[wrap]

    def _grow(self, rows: np.ndarray) -> None:
        """The emitted token's KV joins the host copy."""
        self.ctx[rows] += 1
        np.subtract.at(self.free_tokens, self.pool[rows], 1)

    def _run_jobs(self, submit_s: np.ndarray, ctx: np.ndarray, pool: np.ndarray) -> np.ndarray:
        """FIFO per pool: a job starts when its q/k/v are there and the pool is free; the pool
        works off its core-seconds with all its cores. Returns when each result is back."""
        done = np.empty(len(submit_s))
        order = np.argsort(submit_s, kind="stable")
        for p in np.unique(pool):
            idx = order[pool[order] == p]
            arrive = submit_s[idx] + self._hop_s[p] / 2
            service = ctx[idx] * self.core_s_per_token / self._cores[p]
            cum = np.cumsum(service)
            # finish_i = cum_i + max(busy_until, max_{j<=i}(arrive_j - cum_{j-1}))
            start_gap = np.maximum.accumulate(arrive - (cum - service))
            finish = cum + np.maximum(self._pool_busy_until[p], start_gap)
            self._pool_busy_until[p] = finish[-1]
            done[idx] = finish + self._hop_s[p] / 2
        return done


def _rank_in_group(group: np.ndarray) -> np.ndarray:
    """Each element's position among the earlier elements with the same ``group`` value."""
    if not len(group):
        return group
    order = np.argsort(group, kind="stable")
    g = group[order]
    starts = np.r_[0, np.flatnonzero(g[1:] != g[:-1]) + 1]
    rank = np.empty(len(g), dtype=np.int64)
    rank[order] = np.arange(len(g)) - np.repeat(starts, np.diff(np.r_[starts, len(g)]))
    return rank


class OffloadStep:
    """The offloaded work riding on one GPU step: what ``BatchPlan.offload`` holds."""

    def __init__(self, offload: CPUOffload, start_s: float, pass_s: float, cap: int) -> None:
        self.offload = offload
        self.num_tokens_emitted = 0
        self._candidates = offload.candidates(start_s, pass_s)  # once: caps only filter them
        self.with_cap(cap)

    def with_cap(self, cap: int) -> OffloadStep:
        self.sel = self.offload.take(self._candidates, cap)
        return self

    @property
    def num_rows(self) -> int:
        return len(self.sel.rows)

    @property
    def dense_only_tokens(self) -> float:
        return self.sel.dense_only_tokens

    def duration_s(self, gpu_s: float) -> float:
        return self.offload.duration_s(self.sel, gpu_s)

    def apply(self, start_s: float, end_s: float,
              gaps: list[float] | None = None) -> list[Request]:
        """Advance the rows; returns the requests that emitted their last token."""
        emitted = self.offload.apply(self.sel, start_s, end_s)
        self.num_tokens_emitted = len(emitted)
        return emit_tokens(emitted, end_s, gaps)
