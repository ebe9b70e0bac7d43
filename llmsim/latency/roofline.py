"""Analytic roofline cost model: FLOPs and bytes of the architecture against the GPU's peaks.

Each step is costed as two roofline terms plus fixed costs:
  linear layers + LM head: max(FLOPs / (peak x compute_eff), weight bytes / (HBM bw x bw_eff))
  attention:               max(FLOPs / (peak x compute_eff), KV bytes / (HBM bw x bw_eff))
  + TP all-reduces (2 per layer) + per-step and per-sequence framework overhead.
The efficiencies are assumptions until measured profiles exist (see ``calibration/``).
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from llmsim.latency.base import LatencyConfigBase, LatencyModel, StepShape
from llmsim.models.specs import GPUSpec, ModelSpec


class RooflineConfig(LatencyConfigBase):
    kind: Literal["roofline"] = "roofline"
    compute_efficiency: float = Field(0.55, gt=0, le=1, description="achieved / peak bf16 FLOP/s")
    bandwidth_efficiency: float = Field(0.8, gt=0, le=1, description="achieved / peak HBM bandwidth")
    step_overhead_s: float = Field(0.0015, ge=0, description="fixed launch/scheduler cost per step")
    per_seq_overhead_s: float = Field(1e-5, ge=0, description="sampling/bookkeeping per sequence")
    allreduce_latency_s: float = Field(1e-5, ge=0, description="fixed cost of one TP all-reduce")


class RooflineLatency(LatencyModel):
    kind = "roofline"
    Config = RooflineConfig

    def source(self) -> str:
        return self._source

    def __init__(self, model: ModelSpec, gpu: GPUSpec, tp: int, config: RooflineConfig) -> None:
        self.model, self.gpu, self.tp, self.cfg = model, gpu, tp, config
        self._source = (f"roofline: analytic, {gpu.name} spec sheet ({gpu.peak_bf16_tflops:g} "
                        f"TFLOPS bf16 x {config.compute_efficiency:g}, "
                        f"{gpu.memory_bandwidth_gbps:g} GB/s x {config.bandwidth_efficiency:g})")
        flops_s = gpu.peak_bf16_tflops * 1e12 * config.compute_efficiency
        bytes_s = gpu.memory_bandwidth_gbps * 1e9 * config.bandwidth_efficiency
        m = model
        self._s_per_flop = 1.0 / flops_s
        self._s_per_byte = 1.0 / bytes_s
        # Linear layers: 2 FLOPs per parameter per token; LM head only for rows that sample.
        self._linear_flops_per_token = 2.0 * m.num_layers * m.params_per_layer / tp
        self._head_flops_per_row = 2.0 * m.hidden_size * m.vocab_size / tp
        self._weight_s = m.weight_bytes / tp / bytes_s
        # Attention: QK^T and PV, 2 FLOPs each per (query, key, head, dim).
        self._attn_flops_per_qk = 4.0 * m.num_layers * m.num_heads * m.head_dim / tp
        self._kv_bytes_per_token = m.kv_bytes_per_token_per_gpu(tp)
        # TP: 2 ring all-reduces of the hidden state per layer.
        if tp > 1:
            link_bytes_s = gpu.interconnect_gbps * 1e9
            self._ar_bytes_s_per_token = (2 * m.num_layers * 2 * (tp - 1) / tp
                                          * m.hidden_size * m.dtype_bytes / link_bytes_s)
            self._ar_fixed_s = 2 * m.num_layers * config.allreduce_latency_s
        else:
            self._ar_bytes_s_per_token = 0.0
            self._ar_fixed_s = 0.0

    def step_time_s(self, shape: StepShape) -> float:
        num_rows = len(shape.prefill_chunks) + shape.num_decode_seqs
        if shape.is_empty:
            return 0.0
        tokens = shape.num_tokens
        linear_flops = (shape.dense_tokens * self._linear_flops_per_token
                        + num_rows * self._head_flops_per_row)
        linear_s = max(linear_flops * self._s_per_flop, self._weight_s)
        # Causal prefill chunk of q new tokens over c cached: q*c + q(q+1)/2 query-key pairs.
        qk = sum(q * c + q * (q + 1) / 2 for q, c in shape.prefill_chunks) + shape.decode_context_sum
        kv_read = sum(q + c for q, c in shape.prefill_chunks) + shape.decode_context_sum
        attn_s = max(qk * self._attn_flops_per_qk * self._s_per_flop,
                     (kv_read + tokens) * self._kv_bytes_per_token * self._s_per_byte)
        tp_s = (self._ar_fixed_s + shape.dense_tokens * self._ar_bytes_s_per_token
                if self.tp > 1 else 0.0)
        return (linear_s + attn_s + tp_s + self.cfg.step_overhead_s
                + num_rows * self.cfg.per_seq_overhead_s)

    def decode_run_step_times_s(self, shape: StepShape, num_steps: int) -> np.ndarray:
        b = shape.num_decode_seqs
        ctx = shape.decode_context_sum + b * np.arange(num_steps, dtype=np.float64)
        linear_s = max(b * (self._linear_flops_per_token + self._head_flops_per_row) * self._s_per_flop,
                       self._weight_s)
        attn_s = np.maximum(ctx * self._attn_flops_per_qk * self._s_per_flop,
                            (ctx + b) * self._kv_bytes_per_token * self._s_per_byte)
        tp_s = self._ar_fixed_s + b * self._ar_bytes_s_per_token if self.tp > 1 else 0.0
        fixed = linear_s + tp_s + self.cfg.step_overhead_s + b * self.cfg.per_seq_overhead_s
        return attn_s + fixed
