"""Roofline cost model: limits, monotonicity, and the vectorised decode run."""
from __future__ import annotations

import numpy as np
import pytest

from llmsim.latency.base import StepShape
from llmsim.latency.roofline import RooflineConfig, RooflineLatency
from llmsim.models import resolve_gpu, resolve_model

M, G = resolve_model("llama-3.1-8b"), resolve_gpu("h100")


def model(tp=1, **kw):
    return RooflineLatency(M, G, tp, RooflineConfig(**kw))


def test_small_decode_is_bandwidth_bound_on_weights():
    lat = model(step_overhead_s=0, per_seq_overhead_s=0)
    t = lat.step_time_s(StepShape((), 1, 100, 100))
    weights_s = M.weight_bytes / (G.memory_bandwidth_gbps * 1e9 * 0.8)
    assert t == pytest.approx(weights_s, rel=0.02)


def test_large_prefill_is_compute_bound():
    lat = model(step_overhead_s=0, per_seq_overhead_s=0)
    t = lat.step_time_s(StepShape(((8192, 0),)))
    flops = 2 * M.num_layers * M.params_per_layer * 8192
    assert t > flops / (G.peak_bf16_tflops * 1e12 * 0.55)
    assert t < 1.5 * flops / (G.peak_bf16_tflops * 1e12 * 0.55)


def test_monotone_in_tokens_and_context():
    lat = model()
    ts = [lat.step_time_s(StepShape(((n, 0),))) for n in (128, 512, 2048, 8192)]
    assert ts == sorted(ts)
    ds = [lat.step_time_s(StepShape((), 64, 64 * c, c)) for c in (256, 1024, 4096, 16384)]
    assert ds == sorted(ds) and ds[-1] > ds[0]


def test_tensor_parallel_speeds_up_but_pays_for_all_reduce():
    big = StepShape(((4096, 0),))
    t1, t2 = model(1).step_time_s(big), model(2).step_time_s(big)
    assert t2 < t1 and t2 > t1 / 2


def test_padded_decode_costs_more_than_packed():
    lat = model()
    packed = StepShape((), 4, 100 + 200 + 300 + 4000, 4000)
    padded = StepShape((), 4, 4 * 4000, 4000, padded=True)
    assert lat.step_time_s(padded) > lat.step_time_s(packed)


@pytest.mark.parametrize("tp", [1, 4])
def test_vectorised_decode_run_equals_summed_steps(tp):
    lat = model(tp)
    shape = StepShape((), 7, 7 * 900, 1300)
    fast = lat.decode_run_end_times_s(shape, 50)
    slow = np.cumsum([lat.step_time_s(StepShape((), 7, 7 * 900 + 7 * k, 1300 + k)) for k in range(50)])
    np.testing.assert_allclose(fast, slow, rtol=1e-12)


def test_empty_step_costs_nothing():
    assert model().step_time_s(StepShape()) == 0.0
