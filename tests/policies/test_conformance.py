"""Conformance suite: every registered policy obeys the engine's contracts."""
from __future__ import annotations

import numpy as np
import pytest

from llmsim.cluster.instance import Instance
from llmsim.policies import POLICIES, make_policy
from llmsim.simulation import load_requests, make_latency, resolve_hardware, simulate
from tests.conftest import LIMITS, make_kv, make_requests, tiny_scenario

DECODE = {"kind": "distserve_decode", "max_num_seqs": 64}
POLICY_CONFIGS = {
    "static": [{"kind": "static", "max_num_seqs": 16}],
    "orca": [{"kind": "orca", "max_num_seqs": 32, "reserve_tokens": 1024}],
    "vllm": [{"kind": "vllm", "max_num_seqs": 64},
             {"kind": "vllm", "max_num_seqs": 64, "preemption_mode": "swap"}],
    "sarathi": [{"kind": "sarathi", "max_num_batched_tokens": 256}],
    # prefill-side and decode-side policies run as a disaggregated pair
    "distserve_prefill": [{"kind": "distserve_prefill", "max_num_batched_tokens": 4096}],
    "bucketserve": [{"kind": "bucketserve"}],
    "uellm": [{"kind": "uellm"}],
    "hf_cb": [{"kind": "hf_cb", "max_num_batched_tokens": 256},
              {"kind": "hf_cb", "scheduler": "prefill_first", "max_num_batched_tokens": 1024}],
    "distserve_decode": [{"kind": "distserve_prefill", "decode": {**DECODE, "preemption_mode": "recompute"}}],
    # LS/BE co-location: runs on a mixed LS + BE workload, with host CPUs when it offloads
    "omniserve": [{"kind": "omniserve", "offload": "none"},
                  {"kind": "omniserve", "offload": "layerwise"},
                  {"kind": "omniserve", "offload": "layerwise", "same_iteration_catchup": True},
                  {"kind": "omniserve", "offload": "pipelined"}],
}
CASES = [(name, cfg) for name, cfgs in POLICY_CONFIGS.items() for cfg in cfgs]
IDS = [f"{name}-{c.get('preemption_mode', c.get('offload', 'default'))}"
       f"{'-catchup' if c.get('same_iteration_catchup') else ''}" for name, c in CASES]
BE_STREAM = {"kind": "synthetic", "service_class": "best_effort", "num_requests": 30,
             "arrival": {"kind": "poisson", "rate_per_s": 4.0},
             "prompt_tokens": {"kind": "uniform", "min_tokens": 200, "max_tokens": 1200},
             "output_tokens": {"kind": "uniform", "min_tokens": 20, "max_tokens": 300}}
PREFILL_SIDE = {"distserve_prefill", "bucketserve"}


def scenario_for(cfg: dict, **sections):
    """Colocated for whole-engine policies; a 1 + 1 disaggregated cluster for the P/D ones."""
    cfg = dict(cfg)
    decode = cfg.pop("decode", None)
    if cfg["kind"] == "omniserve":
        ls = tiny_scenario({"kind": "vllm"}).workload.model_dump(mode="json")
        host = {"host": {"local_kv_gib": 0.05, "cores_per_gpu": 4,  # small: fills up, spills
                         "attention": {"kind": "profiled", "profile_gpu": "h100"}}}
        return tiny_scenario(cfg, workload={"kind": "mix", "streams": [ls, BE_STREAM]},
                             cluster={**sections.pop("cluster", {}), **host}, **sections)
    if cfg["kind"] not in PREFILL_SIDE:
        return tiny_scenario(cfg, **sections)
    cluster = {"topology": "disaggregated", "prefill": {"num_instances": 1},
               "decode": {"num_instances": 1}, **sections.pop("cluster", {})}
    return tiny_scenario(cfg, cluster=cluster, decode_policy=decode or DECODE, **sections)


def test_every_registered_policy_is_covered():
    assert {p.name for p in POLICIES} == set(POLICY_CONFIGS)


# A tight KV cache (low utilisation) forces queueing and, for paged policies, preemption.
TIGHT = {"gpu_memory_utilization": 0.4}


@pytest.fixture(params=CASES, ids=IDS)
def checked_run(request, monkeypatch):
    _, cfg = request.param
    original = Instance._apply

    def checked_apply(self, plan, num_steps, start_s, *rest):
        original(self, plan, num_steps, start_s, *rest)
        self.kv.check_invariants()  # KV never over-allocated, books balance after every step

    monkeypatch.setattr(Instance, "_apply", checked_apply)
    sc = scenario_for(cfg, cluster=TIGHT)
    return sc, simulate(sc)


def test_every_request_ends_finished_or_rejected_with_reason(checked_run):
    _, res = checked_run
    df = res.requests
    assert set(df["status"]) <= {"finished", "rejected"}
    assert (df.loc[df["status"] == "rejected", "reject_reason"].str.len() > 0).all()
    fin = df[df["status"] == "finished"]
    assert (fin["num_generated_tokens"] == fin["output_tokens"]).all()
    assert (fin["first_token_s"] >= fin["arrival_s"]).all()
    assert (fin["finish_s"] >= fin["first_token_s"]).all()


def test_tokens_are_conserved(checked_run):
    _, res = checked_run
    df, steps = res.requests, res.steps
    fin = df[df["status"] == "finished"]
    computed = (steps["num_prefill_tokens"].sum() + steps["num_offloaded_tokens"].sum()
                + (steps["num_decode_seqs"] * steps["num_iterations"]).sum())
    expected = ((fin["prompt_tokens"] + fin["output_tokens"] - 1).sum()
                + df["num_recomputed_tokens"].sum() - steps["num_cached_prompt_tokens"].sum())
    assert computed == expected


def test_the_tight_cache_is_actually_exercised(checked_run):
    sc, res = checked_run
    assert res.steps["kv_used_blocks"].max() / res.steps["kv_num_blocks"].iloc[0] > 0.5


@pytest.mark.parametrize("name,cfg", CASES, ids=IDS)
def test_fused_runs_equal_step_by_step(name, cfg):
    runs = [simulate(scenario_for(cfg, cluster=TIGHT, simulation={"fuse_decode_steps": f}))
            for f in (True, False)]
    a, b = runs[0].requests, runs[1].requests
    assert (a["status"] == b["status"]).all()
    np.testing.assert_allclose(a["finish_s"], b["finish_s"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(a["first_token_s"], b["first_token_s"], rtol=0, atol=1e-9)
    assert (a["num_preemptions"] == b["num_preemptions"]).all()
    assert runs[0].steps["num_iterations"].sum() == len(runs[1].steps)
    assert len(runs[0].steps) < len(runs[1].steps)


@pytest.mark.parametrize("name,cfg", CASES, ids=IDS)
def test_first_decision_does_not_read_the_true_output_length(name, cfg):
    sc = scenario_for(cfg)
    decisions = []
    for out in (5, 500):
        policy = make_policy(sc.policy, LIMITS)
        policy.bind(make_latency(sc, resolve_hardware(sc)))
        kv = make_kv(num_blocks=4096, block_size=LIMITS.block_size)
        for r in make_requests([(0.0, 40, out), (0.0, 30, out), (0.0, 20, out)]):
            policy.enqueue(r)
        plan = policy.schedule(kv, 0.0)
        decisions.append([(r.request_id, q) for r, q in plan.prefills])
    assert decisions[0] == decisions[1]


@pytest.mark.parametrize("name,cfg", CASES, ids=IDS)
def test_policy_is_deterministic(name, cfg):
    sc = scenario_for(cfg, cluster=TIGHT)
    a, b = simulate(sc), simulate(sc)
    assert a.summary == b.summary


def test_request_that_never_fits_is_rejected_not_dropped():
    sc = tiny_scenario({"kind": "vllm"}, workload={
        "kind": "synthetic", "num_requests": 3, "arrival": {"kind": "closed"},
        "prompt_tokens": {"kind": "fixed", "tokens": 1500},
        "output_tokens": {"kind": "fixed", "tokens": 1000}})
    res = simulate(sc)
    assert (res.requests["status"] == "rejected").all()
    assert res.requests["reject_reason"].str.contains("max_model_len").all()
    reqs = load_requests(sc)
    assert len(reqs) == len(res.requests)


CHAT = {"kind": "conversation", "num_sessions": 30, "arrival": {"kind": "poisson", "rate_per_s": 6.0},
        "mean_turns": 3, "mean_think_time_s": 0.5, "shared_prefixes": [{"tokens": 400}, {"tokens": 150}],
        "message_tokens": {"kind": "lognormal", "median_tokens": 120, "sigma": 0.8, "max_tokens": 500},
        "output_tokens": {"kind": "lognormal", "median_tokens": 80, "sigma": 0.8, "max_tokens": 300},
        "max_prompt_tokens": 1600}
PREFIX_CASES = [(n, c) for n, c in CASES if n in {"vllm", "sarathi", "hf_cb", "omniserve",
                                                   "distserve_prefill", "bucketserve"}
                and c.get("preemption_mode") != "swap"]


@pytest.mark.parametrize("name,cfg", PREFIX_CASES, ids=[f"{n}-{c.get('offload', 'default')}"
                                                        for n, c in PREFIX_CASES])
def test_shared_blocks_keep_the_books_and_fused_equals_step_by_step(name, cfg, monkeypatch):
    """Prefix caching with a small host tier under the tight cache: after every step the
    reference counts equal the tables' holdings, no held block is evictable, the tiers stay in
    bounds (``check_invariants``); tokens are conserved net of the cached ones; fused runs equal
    step-by-step ones."""
    original = Instance._apply

    def checked_apply(self, plan, num_steps, start_s, *rest):
        original(self, plan, num_steps, start_s, *rest)
        self.kv.check_invariants()

    monkeypatch.setattr(Instance, "_apply", checked_apply)
    kv = {"prefix_caching": True, "host_prefix_cache_gib": 0.05}

    def build(fuse: bool):
        extra = {"kv_cache": kv, "simulation": {"fuse_decode_steps": fuse}}
        if name != "omniserve":
            return scenario_for(cfg, workload=CHAT, cluster=TIGHT, **extra)
        host = scenario_for(cfg).cluster.model_dump(mode="json")["host"]
        return tiny_scenario(cfg, workload={"kind": "mix", "streams": [CHAT, BE_STREAM]},
                             cluster={**TIGHT, "host": host}, **extra)

    runs = [simulate(build(fuse)) for fuse in (True, False)]
    res = runs[0]
    df, steps = res.requests, res.steps
    fin = df[df["status"] == "finished"]
    assert res.summary["prefix_cache"]["hit_tokens"] > 0
    computed = (steps["num_prefill_tokens"].sum() + steps["num_offloaded_tokens"].sum()
                + (steps["num_decode_seqs"] * steps["num_iterations"]).sum())
    assert computed == ((fin["prompt_tokens"] + fin["output_tokens"] - 1).sum()
                        + df["num_recomputed_tokens"].sum() - steps["num_cached_prompt_tokens"].sum())
    np.testing.assert_allclose(res.requests["finish_s"], runs[1].requests["finish_s"], rtol=1e-9)
