"""Pipeline parallelism: a PP group of ``pp`` stages, as llmsim models it.

A PP-p group holds the model's layers split over p stages (each stage a TP group). It keeps up
to p micro-batches in flight, one per stage, so llmsim runs it as p *lanes*: instances that share
the group's GPUs, each with 1/p of its KV pool, each step taking the whole model's time (a token
still crosses every stage) plus p - 1 activation sends between stages. Throughput is p lanes of
that; the weights are stored once per group, which is what makes PP fit large models. Stages are
balanced to within a layer: with L % p != 0 the slowest stage has ceil(L / p) layers and every
lane runs at that stage's pace. [ASSUMPTION] lanes do not share KV or requests with each other
(a real engine could rebalance micro-batches), and pipeline bubbles at low load are ignored.
"""
from __future__ import annotations

import copy
import math

import numpy as np

from llmsim.latency.base import LatencyModel, StepShape
from llmsim.latency.domain import Domain


class PipelineLatency(LatencyModel):
    def __init__(self, inner: LatencyModel, pp: int, num_layers: int, hidden_bytes_per_token: float,
                 link_bytes_per_s: float, send_latency_s: float = 1e-5) -> None:
        self.inner, self.pp = inner, pp
        self.imbalance = pp * math.ceil(num_layers / pp) / num_layers
        self.s_per_token = (pp - 1) * hidden_bytes_per_token / link_bytes_per_s
        self.fixed_s = (pp - 1) * send_latency_s

    def source(self) -> str:
        return f"{self.inner.source()}, pipelined over {self.pp} stages"

    def domain(self) -> Domain | None:
        return self.inner.domain()  # every stage computes the same step shape

    def for_instance(self) -> LatencyModel:
        inner = self.inner.for_instance()
        if inner is self.inner:
            return self
        lane = copy.copy(self)
        lane.inner = inner
        return lane

    def advance(self, shape: StepShape, num_steps: int) -> None:
        self.inner.advance(shape, num_steps)

    def step_time_s(self, shape: StepShape) -> float:
        t = self.inner.step_time_s(shape)
        return t * self.imbalance + self.fixed_s + shape.dense_tokens * self.s_per_token if t else 0.0

    def decode_run_step_times_s(self, shape: StepShape, num_steps: int) -> np.ndarray:
        send = self.fixed_s + shape.num_decode_seqs * self.s_per_token
        return self.inner.decode_run_step_times_s(shape, num_steps) * self.imbalance + send
