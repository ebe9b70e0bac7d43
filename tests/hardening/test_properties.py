"""Whole-scenario properties over random scenarios of every policy and topology (hypothesis).

A fast profile runs in the default suite; the long one (``LLMSIM_LONG_PROPERTIES``-sized,
2,000 examples) under the ``slow`` marker. Each example is simulated fused and step by step."""
from __future__ import annotations

import signal
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmsim.errors import InputError
from llmsim.scenario import scenario_from_dict
from llmsim.simulation import simulate
from tests.conftest import REPO

COLOCATED = ["static", "orca", "vllm", "sarathi", "uellm", "hf_cb", "omniserve"]
PREFILL = ["distserve_prefill", "bucketserve"]
PREFIX_CACHING = {"vllm", "sarathi", "hf_cb", "omniserve", "distserve_prefill", "bucketserve"}
EXAMPLE_S = 60  # one example taking longer than this is a hang


@contextmanager
def deadline(seconds: int):
    def fire(*_):
        raise TimeoutError(f"an example ran past {seconds} s: a hang")
    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _lengths(draw, hi: int) -> dict:
    kind = draw(st.sampled_from(["fixed", "uniform", "lognormal"]))
    if kind == "fixed":
        return {"kind": "fixed", "tokens": draw(st.integers(1, hi))}
    if kind == "uniform":
        a, b = sorted(draw(st.tuples(st.integers(1, hi), st.integers(1, hi))))
        return {"kind": "uniform", "min_tokens": a, "max_tokens": b}
    return {"kind": "lognormal", "median_tokens": draw(st.integers(1, hi // 2 + 1)),
            "sigma": draw(st.floats(0, 1.5)), "max_tokens": hi}


def _stream(draw, service_class: str = "latency_sensitive") -> dict:
    arrival = draw(st.sampled_from(["poisson", "gamma", "constant", "closed"]))
    rate = draw(st.floats(0.5, 60))
    arr = ({"kind": "closed"} if arrival == "closed" else
           {"kind": arrival, "rate_per_s": rate, **({"cv": draw(st.floats(0.3, 4))}
                                                    if arrival == "gamma" else {})})
    return {"kind": "synthetic", "num_requests": draw(st.integers(1, 30)), "arrival": arr,
            "prompt_tokens": _lengths(draw, 900), "output_tokens": _lengths(draw, 250),
            "service_class": service_class}


def _conversation(draw) -> dict:
    """Multi-turn chat sessions: prompts that continue their session's earlier blocks."""
    return {"kind": "conversation", "num_sessions": draw(st.integers(1, 8)),
            "arrival": {"kind": "poisson", "rate_per_s": draw(st.floats(0.5, 20))},
            "mean_turns": draw(st.floats(1, 4)), "max_turns": 5,
            "mean_think_time_s": draw(st.floats(0.01, 3)),
            "shared_prefixes": [{"tokens": draw(st.integers(1, 600))}
                                for _ in range(draw(st.integers(0, 2)))],
            "message_tokens": _lengths(draw, 300), "output_tokens": _lengths(draw, 200),
            "max_prompt_tokens": 1500}


@st.composite
def scenarios(draw) -> dict:
    disagg = draw(st.booleans())
    policy = draw(st.sampled_from(PREFILL if disagg else COLOCATED))
    tp, pp = draw(st.sampled_from([1, 2, 4])), draw(st.sampled_from([1, 1, 2]))
    cluster: dict = {"gpu": draw(st.sampled_from(["a100-40gb", "a100-80gb", "h100"])),
                     "max_model_len": 2048, "router": draw(st.sampled_from(
                         ["round_robin", "least_outstanding", "least_kv"])),
                     "gpu_memory_utilization": draw(st.floats(0.45, 0.95))}
    data: dict = {"name": "prop", "seed": draw(st.integers(0, 2**31 - 1)), "model": "llama-2-7b",
                  "cluster": cluster}
    if disagg:
        cluster.update(topology="disaggregated",
                       prefill={"num_instances": draw(st.integers(1, 2)), "tp": tp, "pp": pp},
                       decode={"num_instances": draw(st.integers(1, 2)),
                               "tp": draw(st.sampled_from([1, 2]))})
        data["decode_policy"] = {"kind": "distserve_decode",
                                 "waiting_block_prop_threshold": draw(st.floats(0.1, 1.0))}
    else:
        cluster.update(num_instances=draw(st.integers(1, 3)), tp=tp, pp=pp)
    pol: dict = {"kind": policy}
    if policy in ("static", "uellm"):
        pol["max_wait_s"] = draw(st.sampled_from([0.0, 0.05, 0.1, 1 / 3]))
    if policy == "vllm":
        pol["preemption_mode"] = draw(st.sampled_from(["recompute", "swap"]))
    if policy == "omniserve":
        pol["offload"] = draw(st.sampled_from(["none", "layerwise", "pipelined"]))
        if pol["offload"] != "none":
            cluster["host"] = {"num_cpu_servers": draw(st.integers(0, 1)),
                               "local_kv_gib": draw(st.sampled_from([0.5, 50.0])),
                               "attention": {"kind": "bandwidth"}}
    data["policy"] = pol
    data["kv_cache"] = {"block_size": draw(st.sampled_from([8, 16, 32])),
                        "watermark": draw(st.floats(0, 0.1)),
                        "swap_space_gib": draw(st.sampled_from([0.0, 4.0]))}
    if draw(st.booleans()):  # a small pool: preemption, swapping and rejection
        data["kv_cache"]["num_blocks"] = draw(st.integers(2, 300))
    caching = (policy in PREFIX_CACHING and pol.get("preemption_mode") != "swap"
               and draw(st.booleans()))
    if caching:  # shared, reference-counted blocks, sometimes a host tier behind them
        data["kv_cache"].update(prefix_caching=True, host_prefix_cache_gib=draw(
            st.sampled_from([0.0, 0.002, 1.0])))
    first = _conversation(draw) if caching and draw(st.booleans()) else _stream(draw)
    if policy == "omniserve":
        data["workload"] = {"kind": "mix", "streams": [first, _stream(draw, "best_effort")]}
    else:
        data["workload"] = first
    data["slo"] = {"ttft_s": 2.0, "tpot_s": 0.2, "deadline_s": 60.0}
    data["predictor"] = {"kind": draw(st.sampled_from(["none", "oracle", "bucketed"]))}
    return data


def _simulate(data: dict, fuse: bool):
    d = {**data, "simulation": {"fuse_decode_steps": fuse}}
    return simulate(scenario_from_dict(d, "property", REPO))


def check_properties(data: dict) -> None:
    try:
        with deadline(EXAMPLE_S):
            fused = _simulate(data, True)
    except InputError as e:  # a combination that cannot be built (memory): one line, named
        assert "\n" not in str(e) and str(e)
        return
    req, steps = fused.requests, fused.steps
    # every request ends final; a rejection says why
    assert set(req["status"]) <= {"finished", "rejected"}, req["status"].value_counts()
    rej = req[req["status"] == "rejected"]
    assert (rej["reject_reason"].str.len() > 0).all()
    fin = req[req["status"] == "finished"]
    # finished requests generated exactly their output tokens
    assert (fin["num_generated_tokens"] == fin["output_tokens"]).all()
    # time order
    eps = 1e-9
    assert (fin["first_scheduled_s"] >= fin["arrival_s"] - eps).all()
    assert (fin["first_token_s"] >= fin["first_scheduled_s"] - eps).all()
    assert (fin["finish_s"] >= fin["first_token_s"] - eps).all()
    # KV never above capacity
    assert (steps["kv_used_blocks"] <= steps["kv_num_blocks"]).all()
    # token conservation: every token computed in a step belongs to a finished request's
    # prompt, its outputs but the last, or a recompute after preemption
    computed = (steps["num_prefill_tokens"] + steps["num_decode_seqs"] * steps["num_iterations"]
                + steps["num_offloaded_tokens"]).sum()
    owed = (fin["prompt_tokens"] + fin["output_tokens"] - 1 + fin["num_recomputed_tokens"]).sum()
    owed -= steps["num_cached_prompt_tokens"].sum()  # found cached, not computed
    assert computed == owed, (computed, owed)
    # fused runs equal step-by-step execution
    with deadline(EXAMPLE_S):
        stepwise = _simulate(data, False).requests
    cols = ["status", "num_generated_tokens", "num_preemptions"]
    pd.testing.assert_frame_equal(req[cols], stepwise[cols])
    for col in ("first_token_s", "finish_s"):
        np.testing.assert_allclose(req[col].to_numpy(), stepwise[col].to_numpy(),
                                   rtol=1e-6, atol=1e-6, equal_nan=True)


FAST = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
LONG = settings(max_examples=2000, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FAST
@given(scenarios())
def test_random_scenarios_hold_every_property(data):
    check_properties(data)


@pytest.mark.slow
@LONG
@given(scenarios())
def test_random_scenarios_hold_every_property_long(data):
    check_properties(data)
