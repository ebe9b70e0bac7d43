"""Memory model: how many KV blocks an instance gets, derived from the hardware, never typed in.

    kv_capacity_tokens = (gpu_memory x utilisation - weights/TP - activation reserve)
                         / (kv_bytes_per_token / TP)        (per GPU of the TP group)
"""
from __future__ import annotations

from dataclasses import dataclass

from llmsim.models.specs import GIB, GPUSpec, ModelSpec


class ModelDoesNotFit(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class MemoryPlan:
    usable_bytes_per_gpu: float
    weight_bytes_per_gpu: float
    activation_reserve_bytes_per_gpu: float
    kv_bytes_per_token_per_gpu: float
    block_size: int
    num_blocks: int
    num_host_blocks: int

    @property
    def kv_capacity_tokens(self) -> int:
        return self.num_blocks * self.block_size


def activation_bytes_per_token(model: ModelSpec, tp: int) -> float:
    """Peak live activations per batched token in one layer's forward (bf16), per GPU.

    The residual stream and its normed copy, the QKV projection output, the attention output and
    the MLP's (gate, up) intermediates. A rough default: the calibration kit measures the real one.
    """
    h, d = model.hidden_size, model.dtype_bytes
    qkv = (model.num_heads + 2 * model.num_kv_heads) * model.head_dim / tp
    mlp = (2 if model.gated_mlp else 1) * model.intermediate_size / tp
    return d * (2 * h + qkv + model.num_heads * model.head_dim / tp + mlp)


def plan_memory(model: ModelSpec, gpu: GPUSpec, tp: int, gpu_memory_utilization: float,
                block_size: int, max_step_tokens: int, swap_space_gib: float,
                framework_overhead_gib: float = 1.0,
                activation_bytes_per_token_override: float | None = None,
                pp: int = 1) -> MemoryPlan:
    """Per GPU of a TP x PP group: each holds 1/(tp x pp) of the weights and of every token's
    KV (its stage's layers, its heads), so ``num_blocks`` counts the whole group's token slots.
    With TP above the KV heads each GPU holds one KV head (replicated), not a fraction."""
    usable = gpu.memory_bytes * gpu_memory_utilization
    weights = model.weight_bytes / (tp * pp)
    per_token = (activation_bytes_per_token_override
                 if activation_bytes_per_token_override is not None
                 else activation_bytes_per_token(model, tp))
    reserve = framework_overhead_gib * GIB + max_step_tokens * per_token
    kv_per_token = model.kv_bytes_per_token_per_gpu(tp) / pp
    free = usable - weights - reserve
    if free < kv_per_token * block_size:
        raise ModelDoesNotFit(
            f"model {model.name} ({model.weight_bytes / 1e9:.1f} GB of weights) does not fit "
            f"{tp * pp} x {gpu.name} ({gpu.memory_gib:.0f} GiB x {gpu_memory_utilization} usable, "
            f"{reserve / GIB:.1f} GiB activation reserve per GPU): raise tp or pp, or choose a larger GPU")
    num_blocks = int(free // (kv_per_token * block_size))
    num_host_blocks = int(swap_space_gib * GIB // (kv_per_token * block_size))
    return MemoryPlan(usable, weights, reserve, kv_per_token, block_size, num_blocks, num_host_blocks)
