"""The engine in CUDA-graph mode priced from measured parts (``calibration.graph_parts``): the
eager parts' kernels on the graph's padded shape plus a fitted replay host part."""
from __future__ import annotations

import json

import numpy as np
import pytest

from calibration.engine_fit import EngineFitConfig, EngineFitLatency
from calibration.graph_parts import graph_parts_fit
from calibration.step_forms import HINGE_WIDTH_S, PARTS_TERMS
from calibration.step_logs import graph_shape, padded
from llmsim.latency.base import StepShape

# the eager parts' GPU side: g_q s/query token, g_p s per 1e6 pairs, g0 s, g_k s/KV token
GQ, GP, G0, GK = 3e-5, 1.5e-3, 4e-3, 1.4e-6
EAGER = {"form": "parts", "width_s": HINGE_WIDTH_S, "features": list(PARTS_TERMS),
         "coef_s": [0.055, 4e-6, 0.0, 0.0, 0.0, GQ, GP, G0, GK],
         "domain": {"query_tokens": 8192.0, "kv_tokens": 1e5, "rows": 256.0,
                    "context_per_row": 8192.0}}


def _kernels(q: int, kv: int) -> float:
    qp, kvp, pairs = padded(q, kv)
    return G0 + GQ * qp + GP * pairs / 1e6 + GK * kvp


def test_a_graph_runs_on_padded_query_read_kv_and_its_own_tokens():
    qp, kv, pairs = padded(100, 20100)  # reads 20,000 from the cache
    assert (qp, kv, pairs) == (128, 32768 + 128, 128 * (32768 + 128))
    assert padded(1, 1)[:2] == (64, 64)  # nothing read from the cache: only its own queries
    q, k, _ = padded(np.array([64, 65]), np.array([64, 16449]))
    assert q.tolist() == [64, 128] and k.tolist() == [64, 16384 + 128]


def _steps(rng, host_s: float, run: str) -> list[dict]:
    out = []
    for i in range(60):
        decode = i % 3
        n = int(rng.integers(4, 200))
        q = n if decode else n + int(rng.integers(64, 4096))
        kv = q + int(rng.integers(0, 90000))
        out.append(dict(num_requests=n, query_tokens=q, kv_tokens=kv, attention_pairs=q * kv,
                        new_shape=int(i % 10 == 0), run=run,
                        duration_s=_kernels(q, kv) + host_s + 0.1 * (i % 10 == 0)))
    return out


def test_the_replay_host_part_is_fitted_on_what_the_kernels_leave():
    rng = np.random.default_rng(5)
    steps = _steps(rng, 0.005, "a") + _steps(rng, 0.005, "b")
    fit = graph_parts_fit(EAGER, steps, capture_s=None)
    assert fit is not None and fit["graph_padded"]
    c = fit["coef_s"]
    assert c[0] == pytest.approx(0.005, rel=0.05) and c[1] == pytest.approx(0.0, abs=2e-6)
    assert c[5:] == EAGER["coef_s"][5:]  # the kernels are the eager parts', not refitted
    assert c[3] == pytest.approx(0.1, rel=0.05)  # capture: the excess of the capture steps
    assert graph_parts_fit(EAGER, steps, capture_s=0.09)["coef_s"][3] == 0.09  # measured apart
    assert fit["parts"]["fit_mape"] < 0.02
    assert graph_parts_fit(EAGER, steps[:15], capture_s=None) is None  # too few replayed


def test_the_graph_parts_model_runs_in_llmsim_on_padded_shapes(tmp_path):
    rng = np.random.default_rng(6)
    fit = graph_parts_fit(EAGER, _steps(rng, 0.005, "a"), capture_s=0.09)
    d = tmp_path / "fits" / "h200" / "llama-3.1-8b"
    d.mkdir(parents=True)
    (d / "engine_step_fit.json").write_text(json.dumps({"hf_cb_graph_parts": fit}))
    lat = EngineFitLatency("llama-3.1-8b", "h200", 1, EngineFitConfig(
        engine="hf_cb_graph_parts", fits_dir=str(tmp_path / "fits")))
    host = fit["coef_s"][0]  # within 0.5 ms: the smoothmax's corner
    pre = StepShape(prefill_chunks=((300, 0),))
    assert lat.step_time_s(pre) == pytest.approx(_kernels(300, 300) + host + 0.09, abs=5e-4)
    lat.advance(pre, 1)
    assert lat.step_time_s(pre) == pytest.approx(_kernels(300, 300) + host, abs=5e-4)
    # a decode run: each step priced on its padded shape, a capture where the key is new
    dec = StepShape((), 8, 8 * 2000, 2000)
    times = lat.decode_run_step_times_s(dec, 3)
    kv = [8 * 2000 + 8 * i for i in range(3)]
    assert graph_shape(8, kv[0], 2000) == graph_shape(8, kv[2], 2002)  # one graph, one capture
    want = [_kernels(8, k) + host for k in kv]
    assert times[0] == pytest.approx(want[0] + 0.09, abs=5e-4)
    assert times[1:] == pytest.approx(want[1:], abs=5e-4)


def test_padding_twice_changes_nothing_so_a_padded_fit_prices_raw_steps():
    from calibration.step_fit import _design, fit_steps, predict_fit
    from calibration.step_logs import padded_steps

    rng = np.random.default_rng(7)
    steps = _steps(rng, 0.005, "a") + _steps(rng, 0.005, "b")
    once = padded_steps(steps)
    assert padded_steps(once) == once
    assert once[0]["query_tokens"] % 64 == 0 and steps[0]["query_tokens"] % 64 != 0
    # a whole-step fit on padded shapes, flagged, prices the raw rows as it was fitted
    fit = {**fit_steps(once, "hinge"), "graph_padded": True}
    assert predict_fit(fit, _design(steps)[0]) == pytest.approx(
        predict_fit({**fit, "graph_padded": False}, _design(once)[0]))


def test_a_model_without_graph_runs_borrows_the_replay_host_part(tmp_path):
    from calibration.graph_parts import borrowed_graph_parts
    from llmsim.latency.domain import reach_warning

    rng = np.random.default_rng(8)
    donor = graph_parts_fit(EAGER, _steps(rng, 0.005, "a"), capture_s=0.09)
    own = {**EAGER, "coef_s": [0.05, 4e-6, 0.0, 0.0, 0.0, 2 * GQ, GP, G0, GK]}
    fit = borrowed_graph_parts(own, donor, "llama-3.1-8b", None, 0.875)
    assert fit["coef_s"][:2] == donor["coef_s"][:2]  # the donor's replay host part
    assert fit["coef_s"][5:] == own["coef_s"][5:]  # its own kernels
    assert fit["coef_s"][3] == pytest.approx(0.09 * 0.875)  # capture: the donor's, by layers
    assert borrowed_graph_parts(own, donor, "llama-3.1-8b", 0.07, 0.875)["coef_s"][3] == 0.07
    d = tmp_path / "h200" / "qwen2.5-7b"
    d.mkdir(parents=True)
    (d / "engine_step_fit.json").write_text(json.dumps({"hf_cb_graph_parts": fit}))
    # a scenario asking for the graph engine is priced by the parts, and says so
    lat = EngineFitLatency("qwen2.5-7b", "h200", 1, EngineFitConfig(
        engine="hf_cb_graph", fits_dir=str(tmp_path)))
    assert lat.graph and lat.padded and "hf_cb_graph_parts" in lat.source()
    line = reach_warning("colocated", lat.domain(), {})
    assert "no hf_cb_graph step fit" in line and "replay's host part is llama-3.1-8b's" in line
    with pytest.raises(Exception, match="'hf_cb' not in"):  # nothing stands in for eager here
        EngineFitLatency("qwen2.5-7b", "h200", 1, EngineFitConfig(engine="hf_cb",
                                                                   fits_dir=str(tmp_path)))
