"""simulate(scenario) -> Results: build the cluster, replay the workload, collect records."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import simpy

from llmsim.cluster.instance import Instance
from llmsim.cluster.kv_cache import KVCache
from llmsim.cluster.memory import MemoryPlan, ModelDoesNotFit, plan_memory
from llmsim.cluster.router import Router
from llmsim.cluster.topology import Colocated
from llmsim.errors import InputError
from llmsim.latency.base import LatencyModel
from llmsim.latency.profiled import ProfiledLatency
from llmsim.latency.roofline import RooflineLatency
from llmsim.metrics.recorder import Recorder, requests_frame
from llmsim.metrics.summary import summarize
from llmsim.models.specs import GPUSpec, ModelSpec, resolve_gpu, resolve_model
from llmsim.policies import EngineLimits, make_policy
from llmsim.request import Request
from llmsim.scenario import Scenario
from llmsim.workload.source import build_requests, workload_frame


@dataclass
class Results:
    scenario: Scenario
    requests: pd.DataFrame
    steps: pd.DataFrame
    summary: dict
    memory: MemoryPlan


@dataclass(frozen=True)
class Hardware:
    model: ModelSpec
    gpu: GPUSpec
    memory: MemoryPlan
    max_model_len: int


def resolve_hardware(sc: Scenario) -> Hardware:
    try:
        model, gpu = resolve_model(sc.model), resolve_gpu(sc.cluster.gpu)
    except ValueError as e:
        raise InputError(f"scenario: {e}") from None
    max_len = sc.cluster.max_model_len or model.max_model_len
    # vLLM sizes its activation reserve with a profiling step of the largest batch it may run.
    step_tokens = getattr(sc.policy, "max_num_batched_tokens", None) or \
        getattr(sc.policy, "chunk_size", None) or max(max_len, 2048)
    try:
        mem = plan_memory(model, gpu, sc.cluster.tp, sc.cluster.gpu_memory_utilization,
                          sc.kv_cache.block_size, min(step_tokens, 65536), sc.kv_cache.swap_space_gib,
                          sc.cluster.framework_overhead_gib)
    except ModelDoesNotFit as e:
        raise InputError(f"cluster: {e}") from None
    return Hardware(model, gpu, mem, max_len)


def make_latency(sc: Scenario, hw: Hardware) -> LatencyModel:
    if sc.latency.kind == "profiled":
        return ProfiledLatency(hw.model, hw.gpu, sc.cluster.tp, sc.latency)
    return RooflineLatency(hw.model, hw.gpu, sc.cluster.tp, sc.latency)


def load_requests(sc: Scenario) -> list[Request]:
    rng = np.random.default_rng(sc.seed)
    df = workload_frame(sc.workload, rng, sc.base_dir)
    return build_requests(df, sc.slo.ttft_s, sc.slo.tpot_s, sc.slo.deadline_s, sc.slo.scale)


def simulate(sc: Scenario, requests: list[Request] | None = None,
             progress: Callable[[int, int], None] | None = None) -> Results:
    hw = resolve_hardware(sc)
    requests = load_requests(sc) if requests is None else requests
    env = simpy.Environment()
    recorder = Recorder()
    total = len(requests)
    state = {"open": total}
    all_done = env.event()
    tick = max(1, total // 200)

    def on_final(r: Request) -> None:
        state["open"] -= 1
        if progress is not None and (state["open"] % tick == 0 or state["open"] == 0):
            progress(total - state["open"], total)
        if state["open"] == 0:
            all_done.succeed()

    limits = EngineLimits(hw.max_model_len, sc.kv_cache.block_size)
    latency = make_latency(sc, hw)  # stateless: one shared by every instance
    instances = []
    for i in range(sc.cluster.num_instances):
        kv = KVCache(hw.memory.num_blocks, sc.kv_cache.block_size, sc.kv_cache.watermark,
                     hw.memory.num_host_blocks)
        instances.append(Instance(env, i, make_policy(sc.policy, limits), kv, latency, recorder,
                                  on_final, hw.max_model_len, sc.simulation.fuse_decode_steps,
                                  sc.simulation.max_run_steps))
    topology = Colocated(instances, Router(sc.cluster.router))

    def arrivals():
        for r in requests:
            if r.arrival_s > env.now:
                yield env.timeout(r.arrival_s - env.now)
            topology.dispatch(r)

    env.process(arrivals())
    if total:
        env.run(until=all_done)
    req_df = requests_frame(requests)
    steps_df = recorder.steps_frame()
    summary = summarize(req_df, steps_df, sc.cluster.num_instances,
                        sc.cluster.num_instances * sc.cluster.tp)
    summary["kv_capacity_tokens_per_instance"] = hw.memory.kv_capacity_tokens
    return Results(sc, req_df, steps_df, summary, hw.memory)
