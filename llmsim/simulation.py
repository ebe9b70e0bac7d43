"""simulate(scenario) -> Results: build the cluster, replay the workload, collect records."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import simpy

from llmsim.cluster.clock import at, defer
from llmsim.cluster.disaggregated import Disaggregated
from llmsim.cluster.host import build_offload, kv_load_s_per_token, kv_move_s_per_token
from llmsim.cluster.instance import Instance, never_fits
from llmsim.cluster.kv_cache import KVCache
from llmsim.cluster.memory import GIB, MemoryPlan, ModelDoesNotFit, plan_memory
from llmsim.cluster.router import Router
from llmsim.cluster.topology import Colocated
from llmsim.errors import InputError, SimulationStuck
from llmsim.hardware import (  # noqa: F401 (make_latency, step_token_cap: imported from here)
    Hardware,
    energy_and_cost,
    make_latency,
    resolve_hardware,
    step_token_cap,
)
from llmsim.latency.base import StepShape
from llmsim.latency.domain import domain_report
from llmsim.latency.error import Perturbed
from llmsim.latency.roofline import RooflineLatency
from llmsim.metrics.provenance import provenance
from llmsim.metrics.recorder import Recorder, requests_frame
from llmsim.metrics.summary import summarize
from llmsim.policies import EngineLimits, make_policy
from llmsim.policies.vllm import VLLMConfig
from llmsim.request import Request, ServiceClass
from llmsim.scenario import Scenario, dump_scenario, role_of
from llmsim.workload.budget import check_request_budget
from llmsim.workload.conversation import conversation_hashes
from llmsim.workload.predictor import apply_predictor
from llmsim.workload.source import build_requests, workload_frame
from llmsim.workload.traces import prefix_hashes

# the step whose speed ``least_work`` routing weighs instances by: 64 decoding rows at 2K
# context (a request spends one prefill and hundreds of decode steps: decode sets the pace)
REFERENCE_STEP = StepShape((), 64, 64 * 2048, 2048)


@dataclass
class Results:
    scenario: Scenario
    requests: pd.DataFrame
    steps: pd.DataFrame
    summary: dict
    memory: MemoryPlan
    provenance: dict = field(default_factory=dict)  # llmsim, commit, scenario hash, seed, wall


def build_topology(env, sc: Scenario, hw: Hardware, recorder: Recorder, on_final,
                   perturb: tuple[float, float] | None = None):
    limits = EngineLimits(hw.max_model_len, sc.kv_cache.block_size)
    c = sc.cluster
    counts = {group: side.num_instances for group, side in sc.sides.items()}
    built: dict[str, list[Instance]] = {}
    next_id = 0
    for group, (tp, mem) in hw.sides.items():
        role, pp = role_of(group), hw.pp[group]
        latency = make_latency(sc, hw, tp, pp, group)
        if perturb is not None:  # one draw of the cost model's own error (llmsim compare)
            latency = Perturbed(latency, *perturb)
        ref_s = latency.step_time_s(REFERENCE_STEP) if c.router == "least_work" else 0.0
        speed = 1.0 / ref_s if ref_s > 0 else 1.0  # a model that prices it at 0: no weighing
        gpu = hw.gpu_of(group)
        pcfg = sc.policies[group]
        num_blocks = (sc.kv_cache.num_blocks or mem.num_blocks) // pp  # a PP group's lanes
        caching = sc.kv_cache.prefix_caching and role != "decode"  # cached where prompts run
        block_bytes = mem.kv_bytes_per_token_per_gpu * sc.kv_cache.block_size
        host_prefix_blocks = int(sc.kv_cache.host_prefix_cache_gib * GIB // block_bytes)
        disk_prefix_blocks = int(sc.kv_cache.disk_prefix_cache_gib * GIB // block_bytes)
        for i in range(counts[group] * pp):
            kv = KVCache(num_blocks, sc.kv_cache.block_size, sc.kv_cache.watermark,
                         mem.num_host_blocks // pp, caching, host_prefix_blocks // pp,
                         disk_prefix_blocks // pp)
            policy = make_policy(pcfg, limits)
            offload_mode = getattr(pcfg, "offload", "none")
            offload = None
            if offload_mode != "none":
                assert c.host is not None  # checked at validation
                offload = build_offload(c.host, hw.model, gpu, tp, i, counts[group] * pp,
                                        offload_mode, getattr(pcfg, "same_iteration_catchup", False))
            lane_latency = latency.for_instance()  # its own engine state, if any
            policy.bind(lane_latency, offload, kv_move_s_per_token(hw.model, gpu, tp))
            inst = Instance(env, next_id, policy, kv, lane_latency, recorder, on_final,
                            hw.max_model_len, sc.simulation.fuse_decode_steps,
                            sc.simulation.max_run_steps, role=role)
            inst.group, inst.speed = group, speed
            inst.kv_load_s_per_token = kv_load_s_per_token(hw.model, gpu, tp)
            # each TP rank reads its shard at the disk tier's rate, through host memory
            inst.kv_disk_load_s_per_token = max(
                inst.kv_load_s_per_token,
                hw.model.kv_bytes_per_token_per_gpu(tp) / (sc.kv_cache.disk_read_gbps * 1e9))
            built.setdefault(role, []).append(inst)
            next_id += 1
    router = Router(c.router)
    if c.topology == "colocated":
        cpu = _cpu_engines(env, sc, hw, recorder, on_final, next_id) if c.cpu_engines else []
        return Colocated(built["colocated"], router, cpu)
    # the slower side's link, unless set (GPUs of two kinds rarely share an NVLink domain:
    # set kv_transfer.bandwidth_gbps to the network between them)
    bw = c.kv_transfer.bandwidth_gbps or min(hw.gpu_of(r).interconnect_gbps for r in hw.sides)
    tp_link = min(side.tp for side in sc.sides.values())
    return Disaggregated(env, built["prefill"], built["decode"], router,
                         hw.model.kv_bytes_per_token, bw * tp_link, c.kv_transfer)


def _cpu_engines(env, sc: Scenario, hw: Hardware, recorder: Recorder, on_final,
                 first_id: int) -> list[Instance]:
    """CPU-only vLLM engines for best-effort overflow, on the CPU server's roofline."""
    ce = sc.cluster.cpu_engines
    assert ce is not None
    try:
        mem = plan_memory(hw.model, ce.server, 1, sc.cluster.gpu_memory_utilization,
                          sc.kv_cache.block_size, 2048, 0.0, sc.cluster.framework_overhead_gib)
    except ModelDoesNotFit as e:
        raise InputError(f"cluster.cpu_engines: {e}") from None
    latency = RooflineLatency(hw.model, ce.server, 1, ce.latency)
    limits = EngineLimits(hw.max_model_len, sc.kv_cache.block_size)
    out = []
    for i in range(ce.num_instances):
        policy = make_policy(VLLMConfig(max_num_seqs=ce.max_num_seqs), limits)
        policy.bind(latency)
        kv = KVCache(mem.num_blocks, sc.kv_cache.block_size, sc.kv_cache.watermark, 0)
        out.append(Instance(env, first_id + i, policy, kv, latency, recorder, on_final,
                            hw.max_model_len, sc.simulation.fuse_decode_steps,
                            sc.simulation.max_run_steps, role="cpu"))
    return out


def never_served(sc: Scenario, hw: Hardware, requests: list[Request]) -> list[str]:
    """Why each request the instances it arrives at could never hold would be rejected: the
    instances' own rule (``cluster.instance.never_fits``) on a cache built as theirs are (of
    colocated groups, the largest: a request goes only where it fits)."""
    first = [g for g in hw.sides if role_of(g) in ("colocated", "prefill")]
    caches = [KVCache((sc.kv_cache.num_blocks or hw.sides[g][1].num_blocks) // hw.pp[g],
                      sc.kv_cache.block_size, sc.kv_cache.watermark) for g in first]
    kv = max(caches, key=lambda k: k.num_blocks)
    reasons = ((r, never_fits(r, hw.max_model_len, kv)) for r in requests)
    return [f"request {r.request_id}: {why}" for r, why in reasons if why]


def _planned_requests(cfg: Any) -> int:
    """Requests a synthetic workload (or the synthetic streams of a mix) will generate."""
    if cfg.kind == "synthetic":
        return int(cfg.num_requests)
    if cfg.kind == "conversation":
        return int(cfg.num_sessions * cfg.mean_turns)
    if cfg.kind == "mix":
        return sum(_planned_requests(s) for s in cfg.streams)
    return 0


def block_hashes(df: Any, block_size: int) -> list[tuple[int, ...]]:
    """Each request's prompt block hashes at ``block_size`` from the trace's prefix-block ids."""
    out: list[tuple[int, ...]] = []
    for ids, src, n in zip(df["prefix_block_ids"], df["prefix_block_tokens"], df["prompt_tokens"]):
        if not isinstance(ids, list):  # a row of a stream without prefix ids (a mix)
            out.append(())
            continue
        if int(src) % block_size:
            raise InputError(f"kv_cache.block_size: {block_size} does not divide the trace's "
                             f"{int(src)}-token prefix blocks")
        out.append(prefix_hashes(ids, int(src), block_size, int(n)))
    return out


def load_requests(sc: Scenario) -> list[Request]:
    check_request_budget(_planned_requests(sc.workload))  # before drawing them
    rng = np.random.default_rng(sc.seed)
    df = workload_frame(sc.workload, rng, sc.base_dir)
    check_request_budget(len(df))
    if sc.kv_cache.prefix_caching:
        bs = sc.kv_cache.block_size
        if "prefix_block_ids" in df.columns:
            df["prefix_hashes"] = block_hashes(df, bs)
        if "session" in df.columns:  # synthetic conversations (a mix may hold both kinds)
            turns = conversation_hashes(df, bs)
            df["prefix_hashes"] = ([t or h for t, h in zip(turns, df["prefix_hashes"])]
                                   if "prefix_hashes" in df.columns else turns)
    reqs = build_requests(df, sc.slo.ttft_s, sc.slo.tpot_s, sc.slo.deadline_s, sc.slo.scale)
    # the predictor draws from its own stream so adding it never changes the workload
    traced = (df["predicted_output_tokens"].tolist() if "predicted_output_tokens" in df.columns
              else None)
    apply_predictor(reqs, sc.predictor, np.random.default_rng([sc.seed, 1]), traced)
    return reqs


def simulate(sc: Scenario, requests: list[Request] | None = None,
             progress: Callable[[int, int], None] | None = None,
             perturb: tuple[float, float] | None = None) -> Results:
    """``perturb``: (prefill, decode) factors on every step time (``latency.error``)."""
    started_s = time.perf_counter()
    hw = resolve_hardware(sc)
    requests = load_requests(sc) if requests is None else requests
    env = simpy.Environment()
    recorder = Recorder()
    every = sc.simulation.until == "all"  # else only latency-sensitive requests end the run
    total = len(requests) if every else sum(
        r.service_class == ServiceClass.LATENCY_SENSITIVE for r in requests)
    state = {"open": total}
    all_done = env.event()
    tick = max(1, total // 200)

    def on_final(r: Request) -> None:
        if not every and r.service_class != ServiceClass.LATENCY_SENSITIVE:
            return
        state["open"] -= 1
        if progress is not None and (state["open"] % tick == 0 or state["open"] == 0):
            progress(total - state["open"], total)
        if state["open"] == 0:
            all_done.succeed()

    topology = build_topology(env, sc, hw, recorder, on_final, perturb)

    def arrivals(requests: list[Request]):
        for r in requests:
            if r.arrival_s > env.now:
                yield at(env, r.arrival_s)
            defer(env, topology.dispatch, r)  # seen after every step that ends now

    env.process(arrivals(requests))
    stop_s = sc.simulation.stop_at_s
    if total:
        try:
            env.run(until=all_done if stop_s is None else all_done | env.timeout(stop_s))
        except RuntimeError as e:  # the event queue ran dry with requests still open
            if "No scheduled events left" not in str(e):
                raise
            stuck = [inst.describe() for inst in topology.instances
                     if inst.num_outstanding or inst.policy.num_running]
            raise SimulationStuck(
                f"simulation stuck at t={env.now:.6f} s: {state['open']} of {total} requests "
                f"never finish and nothing is left to happen; "
                + ("; ".join(stuck) or "no instance holds them")) from None
    in_flight = any(not r.is_finished for r in requests)
    horizon_s = env.now if in_flight else None
    # peak memory: the Request objects go once their frame is built, before the steps' chunks
    # become a frame (which frees the chunks)
    req_df = requests_frame(requests)
    del requests
    steps_df = recorder.steps_frame()
    by_role: dict[str, int] = {}
    for inst in topology.instances:
        by_role[inst.role] = by_role.get(inst.role, 0) + 1
    peak_flops, peak_bytes_per_s = hw.peak()
    summary = summarize(req_df, steps_df, topology.num_instances, sc.num_gpus, by_role,
                        horizon_s, flops_per_token=2.0 * hw.model.num_params,
                        peak_flops=peak_flops, weight_bytes=hw.model.weight_bytes,
                        kv_bytes_per_token=hw.model.kv_bytes_per_token,
                        peak_bytes_per_s=peak_bytes_per_s)
    summary["itl_s"] = recorder.token_gaps.summary()
    energy_and_cost(summary, sc, hw, topology, steps_df)
    sources = dict.fromkeys(i.latency.source() for i in topology.instances if i.role != "cpu")
    summary["latency_model"] = {"kind": sc.latency.kind, "source": "; ".join(sources)}
    if sc.kv_cache.prefix_caching:
        hit = sum(i.kv.prefix_hit_tokens for i in topology.instances)
        prompt = sum(i.kv.prefix_prompt_tokens for i in topology.instances)
        host = sum(i.kv.prefix_host_hit_tokens for i in topology.instances)
        disk = sum(i.kv.prefix_disk_hit_tokens for i in topology.instances)
        summary["prefix_cache"] = {"hit_tokens": hit, "prompt_tokens": prompt,
                                   "hit_rate": hit / prompt if prompt else 0.0,
                                   "gpu_hit_rate": (hit - host - disk) / prompt if prompt else 0.0,
                                   "host_hit_tokens": host,
                                   "host_hit_rate": host / prompt if prompt else 0.0,
                                   "disk_hit_tokens": disk,
                                   "disk_hit_rate": disk / prompt if prompt else 0.0}
    summary["cost_model_domain"] = domain_report(
        [(i.role, i.domain_tally) for i in topology.instances if i.role != "cpu"])
    summary["kv_capacity_tokens_per_instance"] = {
        group: mem.kv_capacity_tokens for group, (_, mem) in hw.sides.items()} \
        if len(hw.sides) > 1 else hw.memory.kv_capacity_tokens
    prov = provenance(dump_scenario(sc), sc.name, sc.seed, time.perf_counter() - started_s)
    return Results(sc, req_df, steps_df, summary, hw.memory, prov)
