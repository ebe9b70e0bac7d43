"""OmniServe behaviour: LS priority within the TPOT bound, BE continuing on host CPUs under LS
pressure, admission control, Llumnix-style overflow to CPU engines, and the LS/BE workload mix."""
from __future__ import annotations

import pytest

from llmsim.errors import InputError
from llmsim.simulation import load_requests, simulate
from tests.conftest import tiny_scenario

LS_STREAM = {"kind": "synthetic", "num_requests": 150,
             "arrival": {"kind": "poisson", "rate_per_s": 6.0},
             "prompt_tokens": {"kind": "lognormal", "median_tokens": 200, "sigma": 0.6, "max_tokens": 1000},
             "output_tokens": {"kind": "lognormal", "median_tokens": 100, "sigma": 0.6, "max_tokens": 400}}
BE_STREAM = {"kind": "synthetic", "service_class": "best_effort", "num_requests": 40,
             "arrival": {"kind": "poisson", "rate_per_s": 4.0},
             "prompt_tokens": {"kind": "uniform", "min_tokens": 800, "max_tokens": 1400},
             "output_tokens": {"kind": "uniform", "min_tokens": 100, "max_tokens": 300}}
HOST = {"host": {"cores_per_gpu": 16, "attention": {"kind": "bandwidth", "core_gbps": 8}}}


def mixed(policy: dict, cluster: dict | None = None, **sections):
    return tiny_scenario({"kind": "omniserve", **policy},
                         workload={"kind": "mix", "streams": [LS_STREAM, BE_STREAM]},
                         cluster={"gpu_memory_utilization": 0.45, **(cluster or {})},
                         slo={"ttft_s": 2.0, "tpot_s": 0.1}, **sections)


def by_class(res):
    df = res.requests
    return df[df["service_class"] == "latency_sensitive"], df[df["service_class"] == "best_effort"]


def test_mix_merges_streams_by_arrival_and_only_ls_carries_slos():
    reqs = load_requests(mixed({"offload": "none"}))
    assert [r.arrival_s for r in reqs] == sorted(r.arrival_s for r in reqs)
    ls = [r for r in reqs if r.service_class.name == "LATENCY_SENSITIVE"]
    be = [r for r in reqs if r.service_class.name == "BEST_EFFORT"]
    assert (len(ls), len(be)) == (150, 40)
    assert all(r.ttft_slo_s == 2.0 and r.tpot_slo_s == 0.1 for r in ls)
    assert all(r.ttft_slo_s == float("inf") and r.deadline_at_s == float("inf") for r in be)


@pytest.fixture(scope="module")
def runs():
    return {mode: simulate(mixed({"offload": mode, "admission_control": False},
                                 HOST if mode != "none" else None))
            for mode in ("none", "layerwise", "pipelined")}


def test_ls_steps_stay_within_the_tpot_slo_while_be_fills_the_rest(runs):
    for mode, res in runs.items():
        ls, be = by_class(res)
        assert (res.requests["status"] == "finished").all(), mode
        # the step bound is the TPOT SLO: LS decodes never wait behind BE work
        assert ls["tpot_s"].quantile(0.99) <= 0.1 * 1.05, mode
        assert res.summary["by_service_class"]["best_effort"]["decode_tokens_per_s"] > 0


def test_be_continues_on_host_cpus_under_ls_pressure_instead_of_recomputing(runs):
    _, be_gpu_only = by_class(runs["none"])
    _, be_offload = by_class(runs["layerwise"])
    assert runs["none"].summary.get("num_offloaded_tokens", 0) == 0
    assert runs["layerwise"].summary["num_offloaded_tokens"] > 0
    assert runs["pipelined"].summary["num_offloaded_tokens"] > 0
    # GPU only: BE is preempted by recompute when LS needs the memory; with a host it moves
    assert be_gpu_only["num_recomputed_tokens"].sum() > be_offload["num_recomputed_tokens"].sum()


def test_admission_control_rejects_early_and_rejections_count_as_misses():
    flood = {**LS_STREAM, "num_requests": 200, "arrival": {"kind": "poisson", "rate_per_s": 100.0}}
    sc = tiny_scenario({"kind": "omniserve", "offload": "none"},
                       workload={"kind": "mix", "streams": [flood, BE_STREAM]},
                       slo={"ttft_s": 0.5, "tpot_s": 0.1})
    on = simulate(sc)
    off = simulate(sc.model_copy(update={"policy": sc.policy.model_copy(
        update={"admission_control": False})}))
    ls_on, _ = by_class(on)
    rejected = ls_on[ls_on["status"] == "rejected"]
    assert len(rejected) > 0
    assert rejected["reject_reason"].str.startswith("admission control: predicted TTFT").all()
    # decided early: at the first step boundary after arrival, well before the SLO expires
    assert ((rejected["finish_s"] - rejected["arrival_s"]) < 0.5).all()
    ls_off, _ = by_class(off)
    assert (ls_off["status"] == "finished").all()
    att = on.summary["by_service_class"]["latency_sensitive"]["slo_attainment"]
    assert att["ttft"] <= 1 - len(rejected) / len(ls_on) + 1e-12
    # the admitted ones meet their TTFT far more often than without control
    admitted = ls_on[ls_on["status"] == "finished"]
    assert (admitted["ttft_s"] <= 0.5).mean() > (ls_off["ttft_s"] <= 0.5).mean()


def test_llumnix_overflow_sends_be_to_cpu_engines_when_the_gpu_lacks_headroom():
    res = simulate(mixed({"offload": "none", "ls_kv_headroom": 0.5},
                         {"cpu_engines": {"num_instances": 1}}))
    steps = res.steps
    cpu_ids = set(steps.loc[steps["role"] == "cpu", "instance"])
    assert cpu_ids
    ls, be = by_class(res)
    assert not set(ls["instance"]) & cpu_ids  # LS never leaves the GPU
    assert set(be["instance"]) & cpu_ids and (be["status"] == "finished").all()


def test_offload_without_a_host_is_a_one_line_error():
    with pytest.raises(InputError, match="policy.offload=layerwise needs cluster.host"):
        mixed({"offload": "layerwise"})


def test_only_slo_sized_steps_protect_ls_decodes_from_long_be_prefills():
    """A vLLM-like whole-prompt budget (the Llumnix baseline) lets BE prefills share steps with
    LS decodes; sizing steps to the TPOT SLO (OmniServe) keeps LS within it."""
    long_be = {**BE_STREAM, "num_requests": 60, "prompt_tokens": {"kind": "fixed", "tokens": 1800},
               "output_tokens": {"kind": "fixed", "tokens": 50}}
    sc = tiny_scenario({"kind": "omniserve", "offload": "none", "admission_control": False,
                        "step_budget": "tokens", "max_num_batched_tokens": 4096},
                       workload={"kind": "mix", "streams": [LS_STREAM, long_be]},
                       slo={"ttft_s": 2.0, "tpot_s": 0.04})
    whole = simulate(sc)
    sized = simulate(sc.model_copy(update={"policy": sc.policy.model_copy(
        update={"step_budget": "slo"})}))
    att = lambda r: r.summary["by_service_class"]["latency_sensitive"]["slo_attainment"]["tpot"]  # noqa: E731
    assert att(whole) < 0.8 and att(sized) == 1.0
    ls, _ = by_class(sized)
    assert ls["tpot_s"].max() <= 0.04
