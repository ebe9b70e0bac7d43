"""Mixed colocated fleets (``cluster.groups``): each group its own GPU, memory, cost model,
price and power; requests go only where they fit; ``least_work`` weighs load by speed."""
from __future__ import annotations

import pytest

from llmsim.errors import InputError
from llmsim.models import resolve_gpu
from llmsim.scenario import scenario_from_dict
from llmsim.simulation import resolve_hardware, simulate


def scenario(groups: list[dict], router: str = "least_outstanding", rate: float = 40.0,
             n: int = 800, **extra) -> dict:
    return {"name": "mixed", "model": "llama-3.1-8b",
            "cluster": {"groups": groups, "router": router, **extra},
            "policy": {"kind": "vllm"}, "latency": {"kind": "roofline"},
            "workload": {"kind": "synthetic", "num_requests": n,
                         "arrival": {"kind": "poisson", "rate_per_s": rate},
                         "prompt_tokens": {"kind": "lognormal", "median_tokens": 400,
                                           "sigma": 1.0, "max_tokens": 4096},
                         "output_tokens": {"kind": "lognormal", "median_tokens": 200,
                                           "sigma": 0.8, "max_tokens": 1024}},
            "slo": {"ttft_s": 0.5, "tpot_s": 0.05}}


def load(data: dict):
    from pathlib import Path
    return scenario_from_dict(data, "test", Path("."))


A100_H200 = [{"num_instances": 2, "gpu": "a100-40gb"}, {"num_instances": 1, "gpu": "h200"}]


def test_groups_get_their_gpus_memory_and_layout():
    sc = load(scenario(A100_H200))
    hw = resolve_hardware(sc)
    assert list(hw.sides) == ["colocated.0", "colocated.1"]
    assert hw.describe_gpus() == "2 a100-40gb + 1 h200"
    assert sc.num_gpus == 3
    small, big = (hw.sides[g][1].kv_capacity_tokens for g in hw.sides)
    assert big > 5 * small  # an H200 holds far more KV than an A100-40GB beside 16 GB of weights


def test_groups_replace_the_flat_layout_and_need_colocated():
    with pytest.raises(InputError, match=r"cluster\.groups.*remove cluster\.num_instances"):
        load(scenario(A100_H200, num_instances=3))
    with pytest.raises(InputError, match=r"cluster\.groups"):
        load(scenario(A100_H200, topology="disaggregated"))
    with pytest.raises(InputError, match=r"cluster\.groups\.1\.gpu: unknown GPU"):
        resolve_hardware(load(scenario([{"gpu": "h100"}, {"gpu": "b999"}])))
    with pytest.raises(InputError, match=r"cluster\.groups\.0\.tp"):
        resolve_hardware(load(scenario([{"gpu": "h100", "tp": 3}])))


def test_each_group_prices_its_steps_and_the_bill_adds_up():
    res = simulate(load(scenario(A100_H200)))
    s, steps = res.summary, res.steps
    assert s["num_finished"] == 800
    hours = s["makespan_s"] / 3600
    expect = hours * (2 * resolve_gpu("a100-40gb").usd_per_hour + resolve_gpu("h200").usd_per_hour)
    assert s["cost"]["usd"] == pytest.approx(expect)
    e = s["energy"]
    assert e["energy_j"] == pytest.approx(e["busy_energy_j"] + e["idle_energy_j"])
    # the same decode step takes longer on an A100 (a third of the H200's bandwidth)
    dec = steps[(steps["num_prefill_tokens"] == 0) & (steps["num_decode_seqs"] == 1)]
    per_step = dec["duration_s"] / dec["num_iterations"]
    by_gpu = per_step.groupby(dec["instance"] == 2).median()
    assert by_gpu[False] > 2 * by_gpu[True]


def test_least_work_sends_more_to_the_faster_gpu_and_serves_better():
    counts, attain = {}, {}
    for router in ("least_outstanding", "least_work"):
        res = simulate(load(scenario(A100_H200, router, rate=30.0, n=1500)))
        per = res.requests.groupby("instance").size()
        counts[router] = per.get(2, 0) / len(res.requests)
        attain[router] = res.summary["slo_attainment"]["both"]
    assert counts["least_work"] > counts["least_outstanding"] + 0.05
    assert attain["least_work"] >= attain["least_outstanding"]


def test_a_request_too_long_for_the_small_group_goes_to_the_big_one():
    data = scenario([{"num_instances": 3, "gpu": "a100-40gb"}, {"num_instances": 1, "gpu": "h200"}],
                    "round_robin", n=12, rate=0.5, max_model_len=131072)
    data["workload"]["prompt_tokens"] = {"kind": "fixed", "tokens": 120000}
    data["workload"]["output_tokens"] = {"kind": "fixed", "tokens": 8}
    res = simulate(load(data))
    r = res.requests
    assert (r["status"] == "finished").all()
    assert set(r["instance"]) == {3}  # only the H200 holds a 120K-token prompt (an A100-40GB: 113K)
