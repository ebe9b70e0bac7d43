"""Host CPU resources of a cluster (OmniServe, policies.md section 9.4): configuration, the CPU
attention cost from the calibration profiles, and the core pools each GPU instance offloads to.

CPU attention is memory-bound, so its cost is kept per KV byte: a profile measured for one model
(heads of one TP shard) prices any model by its KV bytes per token and layer.
"""
from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from llmsim.cluster.offload import CorePool, CPUOffload
from llmsim.config_base import StrictModel
from llmsim.errors import InputError
from llmsim.latency.profiled import PACKAGED_PROFILES, profiles_root
from llmsim.latency.roofline import RooflineConfig
from llmsim.models.specs import GIB, GPUSpec, ModelSpec


class ProfiledCPUAttention(StrictModel):
    """From ``llmsim/profiles/<gpu>/<model>/cpu_attention.csv`` (torch SDPA on the GPU
    machine's host CPU): the median core-seconds per KV byte at the largest measured thread
    count that the smallest pool has, over batches >= 4 and contexts >= 1024."""

    kind: Literal["profiled"] = "profiled"
    profile_gpu: str | None = Field(None, description="whose host was measured; default: the "
                                    "cluster's GPU")
    profile_model: str | None = Field(None, description="default: the scenario's model if it "
                                      "has a profile, else any profiled model")
    dtype: Literal["bfloat16", "float32"] = "bfloat16"
    profiles_dir: str | None = None


class BandwidthCPUAttention(StrictModel):
    """Attention as a KV read at ``core_gbps`` per core (a custom AVX-512 kernel, as in the
    paper, reads far faster than torch's CPU SDPA)."""

    kind: Literal["bandwidth"] = "bandwidth"
    core_gbps: float = Field(8.0, gt=0, description="KV bytes per second one core reads, GB/s")


CPUAttention = Annotated[ProfiledCPUAttention | BandwidthCPUAttention,
                         Field(discriminator="kind")]


class HostConfig(StrictModel):
    """Host DRAM and cores for offloaded attention: each instance's local host, then remote
    CPU-only servers (shared out evenly among the instances)."""

    cores_per_gpu: int = Field(12, gt=0, description="local cores per GPU of an instance")
    local_kv_gib: float = Field(200.0, ge=0, description="local host DRAM for KV, per instance")
    num_cpu_servers: int = Field(0, ge=0, le=10_000)
    server_cores: int = Field(48, gt=0)
    server_kv_gib: float = Field(400.0, ge=0)
    network_gbit_per_s: float = Field(100.0, gt=0, description="to a CPU server (RoCE)")
    network_rtt_s: float = Field(1e-5, ge=0)
    hop_overhead_s: float = Field(5e-5, ge=0, description="queue ops + residual store per hop")
    attention: CPUAttention = ProfiledCPUAttention()


class CPUEngineConfig(StrictModel):
    """CPU-only serving engines for BE overflow (the Llumnix + vLLM-on-CPU baseline): each is an
    instance on a CPU server modelled with the roofline on the server's peaks."""

    num_instances: int = Field(1, gt=0, le=10_000)
    server: GPUSpec = GPUSpec(name="2x-xeon-gold-6342", memory_gib=400, memory_bandwidth_gbps=409.6,
                              peak_bf16_tflops=8.0, interconnect_gbps=12.5, pcie_gbps=12.5)
    latency: RooflineConfig = RooflineConfig(compute_efficiency=0.3, bandwidth_efficiency=0.6,
                                             step_overhead_s=0.005)
    max_num_seqs: int = Field(64, gt=0)


def kv_bytes_per_token_layer(model: ModelSpec) -> float:
    return model.kv_bytes_per_token / model.num_layers


def core_s_per_token_layer(cfg: HostConfig, model: ModelSpec, gpu: str, min_cores: int) -> float:
    a = cfg.attention
    per_token = kv_bytes_per_token_layer(model)
    if isinstance(a, BandwidthCPUAttention):
        return per_token / (a.core_gbps * 1e9)
    df = _profile(Path(profiles_root(a.profiles_dir)), a.profile_gpu or gpu, a.profile_model,
                  model.name)
    df = df[df["dtype"] == a.dtype]
    threads = df["threads"].unique()
    th = threads[threads <= min_cores].max() if (threads <= min_cores).any() else threads.min()
    d = df[(df["threads"] == th) & (df["batch"] >= 4) & (df["ctx"] >= 1024)]
    kv_bytes = d["ctx"] * d["batch"] * 2 * d["kv_heads"] * d["head_dim"] * model.dtype_bytes
    return float(np.median(d["time_s"] * th / kv_bytes)) * per_token


def _profile(root: Path, gpu: str, model: str | None, fallback: str) -> pd.DataFrame:
    names = [model] if model else [fallback] + sorted(p.parent.name for p in
                                                      (root / gpu).glob("*/cpu_attention.csv"))
    for name in names:
        f = root / gpu / name / "cpu_attention.csv"
        if f.is_file():
            return pd.read_csv(f)
    raise InputError(f"cluster.host.attention: no cpu_attention.csv for {gpu} under {root}; "
                     "run calibration/cpu_attention.py or use attention.kind=bandwidth")


def build_offload(cfg: HostConfig, model: ModelSpec, gpu: GPUSpec, tp: int, index: int,
                  num_instances: int, mode: str, catchup: bool) -> CPUOffload:
    """The pools instance ``index`` of ``num_instances`` offloads to: its local host first."""
    d = model.dtype_bytes * model.head_dim
    hop_bytes = (2 * model.num_heads + 2 * model.num_kv_heads) * d  # q, k, v in; output back
    kv_tok = model.kv_bytes_per_token
    pools = [CorePool(cfg.cores_per_gpu * tp, int(cfg.local_kv_gib * GIB // kv_tok),
                      hop_bytes / (gpu.pcie_gbps * 1e9) + cfg.hop_overhead_s)]
    remote_s = (hop_bytes * 8 / (cfg.network_gbit_per_s * 1e9) + cfg.network_rtt_s
                + cfg.hop_overhead_s)
    n = cfg.num_cpu_servers
    if n >= num_instances:  # whole servers, dealt round-robin
        for _ in range(index, n, num_instances):
            pools.append(CorePool(cfg.server_cores, int(cfg.server_kv_gib * GIB // kv_tok),
                                  remote_s))
    elif n:  # fewer servers than instances: each instance gets an equal share of one
        share = n / num_instances
        pools.append(CorePool(max(1, int(cfg.server_cores * share)),
                              int(cfg.server_kv_gib * share * GIB // kv_tok), remote_s))
    core_s = core_s_per_token_layer(cfg, model, gpu.name, min(p.cores for p in pools))
    return CPUOffload(pools, model.num_layers, core_s, mode, catchup)


def kv_move_s_per_token(model: ModelSpec, gpu: GPUSpec, tp: int) -> float:
    """GPU <-> host KV copy: each GPU of the TP group moves its shard over its own PCIe link."""
    return model.kv_bytes_per_token_per_gpu(tp) / (gpu.pcie_gbps * 1e9)


def kv_load_s_per_token(model: ModelSpec, gpu: GPUSpec, tp: int) -> float:
    """Host -> GPU KV load (a prefix cache's host tier): at the GPU's measured pinned-copy
    bandwidth where its machine profile has one (``_machine/transfers.csv``, largest copy),
    else at the catalog's PCIe rate."""
    gbps = _measured_h2d_gbps(gpu.name) or gpu.pcie_gbps
    return model.kv_bytes_per_token_per_gpu(tp) / (gbps * 1e9)


@cache
def _measured_h2d_gbps(gpu: str) -> float | None:
    path = PACKAGED_PROFILES / gpu / "_machine" / "transfers.csv"
    if not path.exists():
        return None
    d = pd.read_csv(path)
    h2d = d[d["kind"] == "h2d"].sort_values("bytes")
    if h2d.empty:
        return None
    last = h2d.iloc[-1]
    return float(last["bytes"] / last["time_s"] / 1e9)
