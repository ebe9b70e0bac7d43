"""Mixed fleets: each side of a disaggregated cluster on its own GPU (memory, cost model,
energy and price per side)."""
from __future__ import annotations

import pytest

from llmsim.errors import InputError
from llmsim.metrics.energy import power_model
from llmsim.models import resolve_gpu
from llmsim.scenario import load_scenario
from llmsim.simulation import make_latency, resolve_hardware, simulate
from tests.conftest import REPO

SCENARIO = REPO / "scenarios" / "mixed-fleet-disagg.yaml"
SMALL = ["workload.num_requests=300", "workload.arrival.rate_per_s=10"]


def test_each_side_gets_its_gpus_memory_and_cost_model():
    sc = load_scenario(SCENARIO, SMALL)
    hw = resolve_hardware(sc)
    assert hw.gpu_of("prefill").name == "h100" and hw.gpu_of("decode").name == "h200"
    assert hw.describe_gpus() == "prefill h100 + decode h200"
    same = resolve_hardware(load_scenario(SCENARIO, [*SMALL, "cluster.prefill.gpu=h200"]))
    assert same.describe_gpus() == "h200"
    # the H200's larger memory holds more KV on the decode side than an H100 on the prefill side
    assert hw.sides["decode"][1].kv_capacity_tokens > 1.5 * hw.sides["prefill"][1].kv_capacity_tokens
    assert "H100" in make_latency(sc, hw, 1, 1, "prefill").source()
    assert "H200" in make_latency(sc, hw, 1, 1, "decode").source()
    flops, bw = hw.peak()
    h100, h200 = resolve_gpu("h100"), resolve_gpu("h200")
    assert bw == pytest.approx(2 * 1e9 * (h100.memory_bandwidth_gbps + h200.memory_bandwidth_gbps))
    assert flops == pytest.approx(2 * 1e12 * (h100.peak_bf16_tflops + h200.peak_bf16_tflops))


def test_energy_and_cost_add_up_over_the_sides():
    res = simulate(load_scenario(SCENARIO, [*SMALL, "cluster.gpu_usd_per_hour=10"]))
    s = res.summary
    hours = s["makespan_s"] / 3600
    # cluster.gpu_usd_per_hour prices cluster.gpu (the decode side's H200); the prefill side
    # names its own GPU and keeps the catalog's price
    assert s["cost"]["usd"] == pytest.approx(2 * hours * 10 + 2 * hours * resolve_gpu("h100").usd_per_hour)
    e = s["energy"]
    assert e["energy_j"] == pytest.approx(e["busy_energy_j"] + e["idle_energy_j"])
    idle = {r: power_model(resolve_gpu(g)).idle_w for r, g in (("prefill", "h100"), ("decode", "h200"))}
    assert min(idle.values()) < e["mean_power_w_per_gpu"] < 700
    assert "measured on H200" in e["power_model"] and "extrapolated" in e["power_model"]


def test_a_bad_side_gpu_is_named():
    with pytest.raises(InputError, match=r"cluster\.prefill\.gpu: unknown GPU 'b200'"):
        resolve_hardware(load_scenario(SCENARIO, ["cluster.prefill.gpu=b200"]))
