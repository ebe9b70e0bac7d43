"""Goodput bisection and DistServe's placement search."""
from __future__ import annotations

import pytest

from llmsim.analysis.goodput import attainment, goodput, max_rate, placement_search
from llmsim.errors import InputError
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
    g = goodput_by_seed(sc, seeds=(0, 1, 2), target=0.9, tol=0.1, window_s=15)
    lo, hi = g["ci95"]
    assert len(g["per_seed"]) == 3 and lo <= g["rate_per_s"] <= hi
    assert min(g["per_seed"]) > 0


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
