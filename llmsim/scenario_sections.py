"""The scenario's hardware and run sections (cluster, KV cache, SLO, simulation), typed and
validated as ``llmsim.scenario`` reads them; instance groups and their roles."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from llmsim.cluster.disaggregated import KVTransferConfig
from llmsim.cluster.host import CPUEngineConfig, HostConfig
from llmsim.config_base import StrictModel
from llmsim.models.specs import GPUSpec

# instances (PP lanes counted) one simulation holds at most: far beyond any fleet studied, well
# short of exhausting memory on the instances' own state
MAX_INSTANCES = 10_000


class SideConfig(StrictModel):
    """One group of identical instances: a side of a disaggregated cluster, or one of
    ``cluster.groups``."""

    num_instances: int = Field(1, gt=0, le=MAX_INSTANCES)
    tp: int = Field(1, gt=0)
    pp: int = Field(1, gt=0, description="pipeline stages per instance (each a TP group)")
    gpu: str | GPUSpec | None = Field(None, description="this side's GPU (default: cluster.gpu): "
                                                        "a mixed fleet")


class ClusterConfig(StrictModel):
    topology: Literal["colocated", "disaggregated"] = "colocated"
    num_instances: int = Field(1, gt=0, le=MAX_INSTANCES, description="colocated instances")
    tp: int = Field(1, gt=0, description="tensor-parallel degree of each colocated instance")
    pp: int = Field(1, gt=0, description="pipeline stages of each colocated instance")
    prefill: SideConfig | None = Field(None, description="disaggregated: prefill instances")
    decode: SideConfig | None = Field(None, description="disaggregated: decode instances")
    kv_transfer: KVTransferConfig = KVTransferConfig()
    gpu: str | GPUSpec = "h100"
    gpu_usd_per_hour: float | None = Field(None, ge=0, description="price of one GPU-hour for "
                                                                   "the cost view; default: the GPU's")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    groups: list[SideConfig] | None = Field(
        None, min_length=1, description="colocated instances in groups, each with its own GPU, "
        "TP and PP (a mixed fleet); replaces cluster.num_instances/tp/pp")
    router: Literal["round_robin", "least_outstanding", "least_kv", "prefix_aware",
                    "least_work"] = "least_outstanding"
    max_model_len: int | None = Field(None, gt=0, description="default: the model's")
    allow_long_max_model_len: bool = Field(
        False, description="allow max_model_len above the model's own (a long-context variant "
        "or RoPE scaling the model spec does not state), as vLLM's VLLM_ALLOW_LONG_MAX_MODEL_LEN")
    framework_overhead_gib: float = Field(1.0, ge=0, description="CUDA context, workspaces")
    host: HostConfig | None = Field(None, description="host CPUs and DRAM for attention offload")
    cpu_engines: CPUEngineConfig | None = Field(None, description="CPU-only engines that serve "
                                                "best-effort overflow (Llumnix baseline)")


class KVCacheConfig(StrictModel):
    block_size: int = Field(16, gt=0, le=4096)
    watermark: float = Field(0.01, ge=0, lt=1)
    swap_space_gib: float = Field(4.0, ge=0, description="host swap space per GPU (as vLLM's; "
                                                       "a TP-n instance has n times this)")
    num_blocks: int | None = Field(None, gt=0, description="override the memory model's count "
                                                             "(e.g. an engine's resolved pool)")
    prefix_caching: bool = Field(False, description="share computed prompt blocks between "
                                 "requests with the same prefix (block hashes from the trace)")
    host_prefix_cache_gib: float = Field(
        0.0, ge=0, description="host-memory tier per GPU (each TP rank keeps its shard of "
                               "a block, as per-worker KV offloading does) for prefix blocks evicted from "
                               "the GPU, loaded back over PCIe on a hit (needs prefix_caching)")
    disk_prefix_cache_gib: float = Field(
        0.0, ge=0, description="local-disk tier per GPU for prefix blocks the host tier "
                               "drops (or the GPU evicts, without one), loaded back on a hit "
                               "(needs prefix_caching)")
    disk_read_gbps: float = Field(
        6.0, gt=0, description="the disk tier's read bandwidth per GPU, GB/s [ASSUMPTION: "
                               "one PCIe 4 NVMe SSD's sequential read]; its loads pass through "
                               "host memory, pipelined with the host-to-GPU copy")


class SLOConfig(StrictModel):
    ttft_s: float | None = Field(None, gt=0)
    tpot_s: float | None = Field(None, gt=0)
    deadline_s: float | None = Field(None, gt=0, description="end-to-end budget after arrival")
    scale: float = Field(1.0, gt=0, description="multiplies every SLO threshold")


class SimulationConfig(StrictModel):
    fuse_decode_steps: bool = Field(True, description="run identical decode steps as one event")
    max_run_steps: int = Field(4096, gt=0)
    until: Literal["all", "latency_sensitive"] = Field(
        "all", description="end the run when every request is final, or when every LS request "
        "is (an overloaded best-effort backlog may never drain; BE throughput is then measured "
        "over the run, BE requests still in flight keep their state)")
    stop_at_s: float | None = Field(None, gt=0, description="end the run here at the latest; "
                                    "requests still in flight keep their state")


def role_of(group: str) -> str:
    """The role of an instance group (``Scenario.sides``): colocated, prefill or decode."""
    return group.split(".")[0]


def config_path(group: str) -> str:
    """Where a group is configured: ``cluster``, ``cluster.groups.1``, ``cluster.prefill``."""
    role, _, index = group.partition(".")
    return f"cluster.groups.{index}" if index else "cluster" if role == "colocated" \
        else f"cluster.{role}"
