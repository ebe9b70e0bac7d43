"""Goodput bisection and DistServe's placement search."""
from __future__ import annotations

import statistics

import numpy as np
import pytest

from llmsim.analysis.goodput import attainment, goodput, max_rate, placement_search
from llmsim.errors import InputError
from llmsim.simulation import simulate
from tests.conftest import tiny_scenario


def test_bisection_finds_the_crossing_of_a_monotone_curve():
    calls = []

    def curve(rate):
        calls.append(rate)
        return 1.0 if rate <= 7.3 else 0.5

    r = max_rate(curve, target=0.9, hi=4.0, tol=0.01)
    assert r <= 7.3 and r == pytest.approx(7.3, rel=0.02)
    assert max_rate(lambda r: 0.0, target=0.9) == 0.0
    with pytest.raises(InputError, match="never binds"):
        max_rate(lambda r: 1.0, target=0.9)


def test_bad_target_is_an_input_error():
    with pytest.raises(InputError):
        max_rate(lambda r: 1.0, target=0)


def test_attainment_falls_with_rate_and_goodput_sits_between():
    sc = tiny_scenario({"kind": "vllm"})
    low, high = attainment(sc, 1.0, window_s=20), attainment(sc, 60.0, window_s=20)
    assert low >= 0.9 > high
    g = goodput(sc, target=0.9, hi=8.0, tol=0.1, window_s=20)
    assert 1.0 <= g["rate_per_s"] < 60.0 and g["per_gpu_rate_per_s"] == g["rate_per_s"] / 1


def test_each_is_the_lower_of_ttft_and_tpot_attainment_from_the_same_runs():
    sc = tiny_scenario({"kind": "vllm"})
    got = {m: attainment(sc, 30.0, seeds=(0, 1), metric=m, window_s=20)
           for m in ("ttft", "tpot", "both", "each")}
    assert got["each"] == min(got["ttft"], got["tpot"])
    assert got["both"] <= got["each"]


def test_placement_search_replicates_each_phase_for_the_target_rate():
    sc = tiny_scenario({"kind": "distserve_prefill"}, decode_policy={"kind": "distserve_decode"},
                       cluster={"topology": "disaggregated", "prefill": {"num_instances": 1},
                                "decode": {"num_instances": 1}})
    p = placement_search(sc, target_rate_per_s=20.0, tps=(1, 2), tol=0.2, window_s=10)
    assert p.tp_prefill in (1, 2) and p.tp_decode in (1, 2)
    assert p.num_prefill * p.goodput_prefill_per_gpu * p.tp_prefill >= 20.0 - 1e-9
    assert p.num_decode * p.goodput_decode_per_gpu * p.tp_decode >= 20.0 - 1e-9
    with pytest.raises(InputError, match="disaggregated"):
        placement_search(tiny_scenario({"kind": "vllm"}), 5.0)


def test_goodput_by_seed_reports_an_interval_around_the_mean():
    from llmsim.analysis.goodput import goodput_by_seed

    sc = tiny_scenario({"kind": "vllm"})
    probes = []
    g = goodput_by_seed(sc, seeds=(0, 1, 2), target=0.9, tol=0.1, window_s=15,
                        on_probe=lambda rate, att: probes.append((rate, att)))
    lo, hi = g["ci95"]
    assert len(g["per_seed"]) == 3 and lo <= g["rate_per_s"] <= hi
    assert min(g["per_seed"]) > 0
    # Student's t with n - 1 = 2 degrees of freedom: 4.303 x the standard error
    sem = statistics.stdev(g["per_seed"]) / 3 ** 0.5
    assert hi - g["rate_per_s"] == pytest.approx(4.302653 * sem, rel=1e-6)
    assert len(probes) >= 6 and all(0 <= a <= 1 for _, a in probes)  # progress per probe


def test_min_slo_scale_is_where_attainment_crosses_the_target():
    from llmsim.analysis.goodput import attainment, min_slo_scale

    sc = tiny_scenario({"kind": "vllm"})
    scale = min_slo_scale(sc, rate_per_s=10.0, target=0.9, window_s=15)
    assert 0 < scale < 16
    data = sc.model_dump(mode="json")

    def att(s):
        from llmsim.scenario import scenario_from_dict
        data["slo"]["scale"] = s
        return attainment(scenario_from_dict(data, "t", sc.base_dir), 10.0, window_s=15)

    assert att(scale) >= 0.9 and att(scale * 0.9) < 0.9


def _pp_scenario(pp: int, **cluster):
    return tiny_scenario({"kind": "vllm"}, cluster={"pp": pp, **cluster})


def test_pipeline_stages_split_weights_and_kv_and_run_as_lanes():
    from llmsim.simulation import resolve_hardware

    one, two = resolve_hardware(_pp_scenario(1)), resolve_hardware(_pp_scenario(2))
    m1, m2 = one.memory, two.memory
    assert m2.weight_bytes_per_gpu == pytest.approx(m1.weight_bytes_per_gpu / 2)
    assert m2.num_blocks > 2 * m1.num_blocks  # the group stores the weights once
    assert _pp_scenario(2).num_gpus == 2
    res = simulate(_pp_scenario(2))
    assert res.steps["instance"].nunique() == 2  # two micro-batch lanes
    assert (res.requests["status"] == "finished").all()


def test_pipeline_lane_steps_pay_the_stage_sends_and_the_slowest_stage():
    from llmsim.latency.base import StepShape
    from llmsim.simulation import make_latency, resolve_hardware

    sc1, sc3 = _pp_scenario(1), _pp_scenario(3)  # llama-2-7b: 32 layers, stages of 11/11/10
    flat = make_latency(sc1, resolve_hardware(sc1))
    piped = make_latency(sc3, resolve_hardware(sc3), pp=3)
    shape = StepShape(((512, 0),), 8, 8 * 300, 300)
    t1, t3 = flat.step_time_s(shape), piped.step_time_s(shape)
    assert t3 > t1 * 33 / 32  # 3 x 11 of 32 layers' pace, plus two activation sends
    ends = piped.decode_run_end_times_s(StepShape((), 8, 2400, 300), 5)
    single = [piped.step_time_s(StepShape((), 8, 2400 + 8 * k, 300 + k)) for k in range(5)]
    np.testing.assert_allclose(ends, np.cumsum(single))


def test_placement_search_uses_pipeline_stages_when_a_phase_does_not_fit_otherwise():
    small = {"name": "24g", "memory_gib": 24, "memory_bandwidth_gbps": 1500,
             "peak_bf16_tflops": 150, "interconnect_gbps": 300, "pcie_gbps": 32}
    sc = tiny_scenario({"kind": "distserve_prefill"}, decode_policy={"kind": "distserve_decode"},
                       model="llama-2-13b",  # 26 GB of weights: needs 2 GPUs of 24 GiB
                       cluster={"topology": "disaggregated", "gpu": small,
                                "prefill": {"num_instances": 1}, "decode": {"num_instances": 1}})
    p = placement_search(sc, target_rate_per_s=4.0, tps=(1,), pps=(1, 2), tol=0.3, window_s=10)
    assert (p.tp_prefill, p.pp_prefill) == (1, 2) and (p.tp_decode, p.pp_decode) == (1, 2)
    assert p.num_gpus == 2 * (p.num_prefill + p.num_decode)
    with pytest.raises(InputError, match="max_gpus_per_instance"):
        placement_search(sc, 4.0, tps=(4,), pps=(4,), max_gpus_per_instance=8)
