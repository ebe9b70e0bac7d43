"""GPU energy and cost: the power model against the measured energy per step, energy that adds
up to the instances' busy and idle GPU-time, and cost that is price x GPUs x hours."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from llmsim.metrics.energy import PowerModel, gpu_energy, power_model, run_cost
from llmsim.models import resolve_gpu
from llmsim.models.specs import GPUSpec
from llmsim.scenario import load_scenario
from llmsim.simulation import simulate
from tests.conftest import REPO

FIT = REPO / "llmsim" / "profiles" / "h200" / "_power" / "power_fit.json"


def test_the_committed_fit_is_what_the_lab_fits_and_matches_the_measured_steps():
    from calibration.power_fit import fit, predict, utilisation

    committed = json.loads(FIT.read_text())
    again = fit("h200")
    for k in ("c0_w", "c_mfu_w", "c_mbu_w", "idle_w", "cap_w"):
        assert again[k] == pytest.approx(committed[k], rel=1e-3)
    pm = power_model(resolve_gpu("h200"))
    assert pm is not None and "measured on H200" in pm.source
    for model in ("llama-3.1-8b", "qwen2.5-7b"):
        d = pd.read_csv(REPO / "llmsim" / "profiles" / "h200" / model / "power.csv")
        d = utilisation(d[d["phase"] != "idle"], model, "h200")
        p = np.array([committed[k] for k in ("c0_w", "c_mfu_w", "c_mbu_w")])
        err = predict(p, committed["cap_w"], d["mfu"], d["mbu"]) / d["power_w"] - 1
        assert err.abs().max() < 0.06, (model, err.round(3).tolist())
        # compute-bound prefills sit at the power limit, a batch-1 decode near half of it
        assert (d.loc[d["phase"] == "prefill", "power_w"] > 0.95 * committed["cap_w"]).all()


def _steps(**cols) -> pd.DataFrame:
    base = {"instance": [0], "duration_s": [1.0], "num_iterations": [1], "num_prefill_tokens": [0],
            "num_decode_seqs": [0], "num_offloaded_tokens": [0], "kv_used_tokens": [0]}
    return pd.DataFrame({**base, **cols})


def test_energy_adds_up_to_busy_and_idle_gpu_time():
    pm = PowerModel(cap_w=700, c0_w=100, c_mfu_w=1000, c_mbu_w=500, idle_w=80, source="test")
    gpu = resolve_gpu("h200")
    peak = gpu.peak_bf16_tflops * 1e12
    # instance 0 (TP 2): one 1 s step at MFU 0.1 and MBU 0 -> 200 W per GPU; instance 1 (TP 1)
    # never runs; a 10 s window
    steps = _steps(num_prefill_tokens=[int(0.1 * peak * 2 / 2)])  # tokens x 2 flops
    e = gpu_energy(steps, {0: 2, 1: 1}, 10.0, pm, gpu, flops_per_token=2.0, weight_bytes=0.0,
                   kv_bytes_per_token=0.0)
    assert e["busy_energy_j"] == pytest.approx(200 * 1.0 * 2)
    assert e["idle_energy_j"] == pytest.approx(80 * (10 * 3 - 2))
    assert e["energy_j"] == pytest.approx(e["busy_energy_j"] + e["idle_energy_j"])
    assert e["mean_power_w_per_gpu"] == pytest.approx(e["energy_j"] / 30)
    # a saturated step draws the cap, never more; no steps at all: idle only
    hot = gpu_energy(_steps(num_prefill_tokens=[int(peak)]), {0: 1}, 1.0, pm, gpu, 2.0, 0.0, 0.0)
    assert hot["busy_energy_j"] == pytest.approx(700)
    idle = gpu_energy(_steps().iloc[:0], {0: 4}, 5.0, pm, gpu, 2.0, 0.0, 0.0)
    assert idle["energy_j"] == pytest.approx(80 * 4 * 5)
    assert run_cost(8, 1800, 3.0)["usd"] == pytest.approx(12.0)


def test_a_run_reports_energy_and_cost_and_a_gpu_without_data_reports_neither():
    res = simulate(load_scenario(None, ["workload.num_requests=200", "cluster.gpu=h200",
                                        "cluster.gpu_usd_per_hour=2.0"]))
    s = res.summary
    e, c = s["energy"], s["cost"]
    pm = power_model(resolve_gpu("h200"))
    assert pm is not None and pm.idle_w < e["mean_power_w_per_gpu"] < pm.cap_w
    gpu_s = s["makespan_s"] * s["num_gpus"]
    busy_s = (res.steps["duration_s"]).sum()  # TP 1: one GPU per instance
    assert e["idle_energy_j"] == pytest.approx((gpu_s - busy_s) * pm.idle_w)
    assert c["usd"] == pytest.approx(s["num_gpus"] * s["makespan_s"] / 3600 * 2.0)
    out = s["throughput"]["output_tokens_per_s"] * s["makespan_s"]
    assert e["j_per_output_token"] == pytest.approx(e["energy_j"] / out)
    assert c["usd_per_million_output_tokens"] == pytest.approx(c["usd"] / out * 1e6)
    # an H100 borrows the H200's model, scaled to its board power, and says so
    h100 = power_model(resolve_gpu("h100"))
    assert h100 is not None and "extrapolated" in h100.source
    a100 = power_model(resolve_gpu("a100-40gb"))
    assert a100 is not None and a100.cap_w == pytest.approx(400)
    custom = GPUSpec(memory_gib=80, memory_bandwidth_gbps=2000, peak_bf16_tflops=300,
                     interconnect_gbps=300, pcie_gbps=32)
    assert power_model(custom) is None
    bare = simulate(load_scenario(None, ["workload.num_requests=50", "cluster.gpu={memory_gib: 80, "
                                         "memory_bandwidth_gbps: 2000, peak_bf16_tflops: 300, "
                                         "interconnect_gbps: 300, pcie_gbps: 32}",
                                         "latency={kind: roofline}"]))
    assert "energy" not in bare.summary and "cost" not in bare.summary
