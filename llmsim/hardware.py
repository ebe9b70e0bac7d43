"""The hardware a scenario runs on, resolved once: the model, each side's GPU, TP/PP and memory
plan, its cost model, and what a run's GPUs drew and cost."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from llmsim.cluster.memory import MemoryPlan, ModelDoesNotFit, plan_memory
from llmsim.errors import InputError
from llmsim.latency.base import LatencyModel
from llmsim.latency.pipeline import PipelineLatency
from llmsim.latency.registry import latency_class
from llmsim.metrics.energy import gpu_energy, per_output, power_model, run_cost
from llmsim.models.specs import GPUSpec, ModelSpec, resolve_gpu, resolve_model
from llmsim.policies import PolicyConfigBase
from llmsim.scenario import MAX_INSTANCES, Scenario, config_path


@dataclass(frozen=True)
class Hardware:
    model: ModelSpec
    gpu: GPUSpec  # cluster.gpu: every side's unless it names its own
    max_model_len: int
    sides: dict  # group -> (tp, MemoryPlan); groups as ``Scenario.sides`` names them
    pp: dict  # group -> pipeline stages per instance
    gpus: dict = field(default_factory=dict)  # group -> GPUSpec, for a group with its own GPU
    num_gpus: dict = field(default_factory=dict)  # group -> GPUs of the group

    @property
    def memory(self) -> MemoryPlan:
        return next(iter(self.sides.values()))[1]

    def gpu_of(self, group: str) -> GPUSpec:
        return self.gpus.get(group, self.gpu)

    def describe_gpus(self) -> str:
        """``h100``, or per group for a mixed fleet: ``prefill h200 + decode h100``,
        ``4 h100 + 2 h200`` (colocated groups: GPUs of each)."""
        names = {group: self.gpu_of(group).name for group in self.sides}
        if len(set(names.values())) == 1:
            return next(iter(names.values()))
        return " + ".join(f"{self.num_gpus[g]} {name}" if g.startswith("colocated.")
                          else f"{g} {name}" for g, name in names.items())

    def peak(self) -> tuple[float, float]:
        """(bf16 FLOP/s, HBM bytes/s) of every GPU of the cluster together."""
        flops = sum(n * self.gpu_of(r).peak_bf16_tflops * 1e12 for r, n in self.num_gpus.items())
        bw = sum(n * self.gpu_of(r).memory_bandwidth_gbps * 1e9 for r, n in self.num_gpus.items())
        return flops, bw


def step_token_cap(policy_cfg: PolicyConfigBase, max_len: int) -> int:
    """The most tokens one step of this policy may hold."""
    # vLLM sizes its activation reserve with a profiling step of the largest batch it may run.
    budget = policy_cfg.token_budget
    return min(budget or max(max_len, 2048), 65536)


def check_parallelism(sc: Scenario, model: ModelSpec) -> None:
    """TP splits attention heads and KV heads evenly (KV heads are replicated when TP exceeds
    them, as vLLM does: then TP must be a multiple of them); PP splits layers."""
    for group, side in sc.sides.items():
        where = config_path(group)
        if model.num_heads % side.tp:
            raise InputError(f"{where}.tp: {side.tp} does not divide {model.name}'s "
                             f"{model.num_heads} attention heads")
        kv = model.num_kv_heads
        if (kv % side.tp if side.tp <= kv else side.tp % kv):
            raise InputError(f"{where}.tp: {side.tp} neither divides {model.name}'s {kv} KV "
                             f"heads nor is a multiple of them (KV heads are replicated)")
        if side.pp > model.num_layers:
            raise InputError(f"{where}.pp: {side.pp} stages exceed {model.name}'s "
                             f"{model.num_layers} layers")


def resolve_hardware(sc: Scenario) -> Hardware:
    try:
        model = resolve_model(sc.model)
    except ValueError as e:
        raise InputError(f"model: {e}") from None
    try:
        gpu = resolve_gpu(sc.cluster.gpu)
    except ValueError as e:
        raise InputError(f"cluster.gpu: {e}") from None
    max_len = sc.cluster.max_model_len or model.max_model_len
    c = sc.cluster
    check_parallelism(sc, model)
    lanes = sum(s.num_instances * s.pp for s in sc.sides.values())
    if lanes > MAX_INSTANCES:
        raise InputError(f"cluster: {lanes:,} instances (PP lanes counted) exceed the "
                         f"{MAX_INSTANCES:,} one simulation holds; simulate a slice of the fleet")
    if max_len > model.max_model_len and not c.allow_long_max_model_len:
        raise InputError(f"cluster.max_model_len: {max_len} exceeds {model.name}'s "
                         f"{model.max_model_len}; set cluster.allow_long_max_model_len: true "
                         "for a long-context variant")
    sides, pps, gpus, counts = {}, {}, {}, {}
    for group, side in sc.sides.items():
        if side.gpu is not None:
            try:
                gpus[group] = resolve_gpu(side.gpu)
            except ValueError as e:
                raise InputError(f"{config_path(group)}.gpu: {e}") from None
        counts[group] = side.num_instances * side.tp * side.pp
        try:
            sides[group] = (side.tp, plan_memory(
                model, gpus.get(group, gpu), side.tp, c.gpu_memory_utilization,
                sc.kv_cache.block_size,
                step_token_cap(sc.policies[group], max_len), sc.kv_cache.swap_space_gib,
                c.framework_overhead_gib, pp=side.pp))
            pps[group] = side.pp
        except ModelDoesNotFit as e:
            where = "" if group == "colocated" else f"{group}: "
            raise InputError(f"cluster: {where}{e}") from None
    return Hardware(model, gpu, max_len, sides, pps, gpus, counts)


def make_latency(sc: Scenario, hw: Hardware, tp: int | None = None, pp: int = 1,
                 group: str | None = None) -> LatencyModel:
    """The cost model of one instance group (default: the cluster's GPU)."""
    tp = tp or next(iter(hw.sides.values()))[0]
    gpu = hw.gpu_of(group) if group else hw.gpu
    build: Callable[..., LatencyModel] = latency_class(sc.latency.kind)
    lat = build(hw.model, gpu, tp, sc.latency)
    if pp == 1:
        return lat
    m = hw.model  # stage-to-stage sends of the hidden state, over NVLink, from each TP rank
    return PipelineLatency(lat, pp, m.num_layers, m.hidden_size * m.dtype_bytes / tp,
                           gpu.interconnect_gbps * 1e9)


def energy_and_cost(summary: dict, sc: Scenario, hw: Hardware, topology: Any,
                     steps: pd.DataFrame) -> None:
    """The run's GPU energy (where every group's GPU has a power model) and cost (where every
    group's GPU has a price; ``cluster.gpu_usd_per_hour`` prices ``cluster.gpu``)."""
    parts: list[dict] | None = []
    usd, priced = 0.0, True
    for group, n in hw.num_gpus.items():
        gpu = hw.gpu_of(group)
        pm = power_model(gpu)
        if pm is not None and parts is not None:
            gpus_of = {i.instance_id: hw.sides[group][0] for i in topology.instances
                       if i.group == group}
            parts.append(gpu_energy(steps, gpus_of, summary["makespan_s"], pm, gpu,
                                    2.0 * hw.model.num_params, hw.model.weight_bytes,
                                    hw.model.kv_bytes_per_token))
        else:
            parts = None  # energy of some GPUs only would understate the run's
        price = (sc.cluster.gpu_usd_per_hour if group not in hw.gpus
                 and sc.cluster.gpu_usd_per_hour is not None else gpu.usd_per_hour)
        if price is None:
            priced = False
        else:
            usd += run_cost(n, summary["makespan_s"], price)["usd"]
    energy = _combine(parts, summary["makespan_s"] * sum(hw.num_gpus.values())) if parts else None
    cost = None
    if priced:
        hours = summary["makespan_s"] / 3600 * sum(hw.num_gpus.values())
        cost = {"usd": usd, "usd_per_gpu_hour": usd / hours if hours else float("nan")}
    per_output(summary, energy, cost)
    if energy is not None:
        summary["energy"] = energy
    if cost is not None:
        summary["cost"] = cost


def _combine(parts: list[dict], gpu_s: float) -> dict:
    out = {k: sum(p[k] for p in parts) for k in ("energy_j", "busy_energy_j", "idle_energy_j")}
    out["mean_power_w_per_gpu"] = out["energy_j"] / gpu_s if gpu_s else float("nan")
    out["power_model"] = "; ".join(dict.fromkeys(p["power_model"] for p in parts))
    return out
