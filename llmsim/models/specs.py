"""Typed architecture and GPU specs; the built-in catalog lives in ``catalog.yaml``."""
from __future__ import annotations

from functools import cache
from importlib import resources

import yaml
from pydantic import ConfigDict, Field

from llmsim.config_base import StrictModel

GIB = 1024**3


class ModelSpec(StrictModel):
    """Decoder-only transformer dimensions (what the cost and memory models need)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    name: str = "custom"
    num_layers: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    num_heads: int = Field(gt=0)
    num_kv_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    intermediate_size: int = Field(gt=0)
    vocab_size: int = Field(gt=0)
    gated_mlp: bool = True  # SwiGLU (3 matrices) vs a plain 2-matrix MLP (OPT)
    tied_embeddings: bool = False
    max_model_len: int = Field(gt=0)
    dtype_bytes: int = Field(default=2, gt=0)

    @property
    def params_per_layer(self) -> int:
        h, q, kv = self.hidden_size, self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        attn = h * q + 2 * h * kv + q * h
        mlp = (3 if self.gated_mlp else 2) * h * self.intermediate_size
        return attn + mlp

    @property
    def num_params(self) -> int:
        embed = self.vocab_size * self.hidden_size
        head = 0 if self.tied_embeddings else embed
        return self.num_layers * self.params_per_layer + embed + head

    @property
    def weight_bytes(self) -> int:
        return self.num_params * self.dtype_bytes

    @property
    def kv_bytes_per_token(self) -> int:
        """2 (K and V) x layers x kv_heads x head_dim x dtype bytes, for the whole model."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * self.dtype_bytes

    def kv_bytes_per_token_per_gpu(self, tp: int) -> float:
        """One token's KV on one GPU of a TP group: KV heads split over TP, replicated once TP
        exceeds them (as vLLM does)."""
        return self.kv_bytes_per_token / min(tp, self.num_kv_heads)


class GPUSpec(StrictModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    name: str = "custom"
    memory_gib: float = Field(gt=0)
    memory_bandwidth_gbps: float = Field(gt=0, description="HBM bandwidth, GB/s")
    peak_bf16_tflops: float = Field(gt=0, description="dense bf16 tensor-core peak")
    interconnect_gbps: float = Field(gt=0, description="GPU-GPU (NVLink) bandwidth per direction, GB/s")
    pcie_gbps: float = Field(gt=0, description="host<->device bandwidth per direction, GB/s")
    tdp_w: float | None = Field(None, gt=0, description="board power limit, W (energy)")
    usd_per_hour: float | None = Field(None, ge=0, description="price of one GPU-hour (cost)")

    @property
    def memory_bytes(self) -> float:
        return self.memory_gib * GIB


@cache
def _catalog() -> dict:
    text = resources.files("llmsim.models").joinpath("catalog.yaml").read_text()
    return yaml.safe_load(text)


def builtin_models() -> dict[str, ModelSpec]:
    return {k: ModelSpec(name=k, **v) for k, v in _catalog()["models"].items()}


def builtin_gpus() -> dict[str, GPUSpec]:
    return {k: GPUSpec(name=k, **v) for k, v in _catalog()["gpus"].items()}


def resolve_model(ref: str | ModelSpec) -> ModelSpec:
    if isinstance(ref, ModelSpec):
        return ref
    models = builtin_models()
    if ref.lower() not in models:
        raise ValueError(f"unknown model {ref!r}; built-in: {', '.join(sorted(models))}, "
                         "or give the spec inline")
    return models[ref.lower()]


def resolve_gpu(ref: str | GPUSpec) -> GPUSpec:
    if isinstance(ref, GPUSpec):
        return ref
    gpus = builtin_gpus()
    if ref.lower() not in gpus:
        raise ValueError(f"unknown GPU {ref!r}; built-in: {', '.join(sorted(gpus))}, "
                         "or give the spec inline")
    return gpus[ref.lower()]
