"""The engine's step assembled from measured parts (``calibration.step_parts``): forward-probe
step logs of a known engine give back its parts, and the assembled model prices whole steps,
including steps past every step the parts runs logged."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from calibration.engine_fit import EngineFitConfig, EngineFitLatency
from calibration.forward_probe import COLUMNS as FORWARD_COLUMNS
from calibration.forward_probe import ForwardProbe
from calibration.step_forms import HINGE_WIDTH_S, predict
from calibration.step_parts import fit_parts, parts_from_log, predict_steps
from llmsim.latency.base import StepShape
from tests.lab.test_step_forms import _steps as _hinge_steps

HOST = (0.003, 6e-5, 4e-8)  # c0, per request, per KV token
PLAN, LAUNCH = 0.045, 0.024
GPU = (0.004, 2.2e-5, 1.3e-3, 1e-8)  # g0, per query token, per 1e6 attention pairs, per KV token


def _gpu(q, k):
    return GPU[0] + GPU[1] * q + GPU[2] * q * k / 1e6 + GPU[3] * k


def _write_log(path, rng, count=400, clean=True):
    """A forward-probe ``steps.csv`` of an engine whose parts are the constants above."""
    header = ["step", "schedule_s", "end_s", "num_requests", "query_tokens", "kv_tokens",
              "max_kv_tokens", "scheduled_s", "update_s", "sdpa_calls", "sdpa_first_s",
              "sdpa_host_s", *FORWARD_COLUMNS]
    t, rows = 0.0, []
    for i in range(count):
        n = int(rng.integers(1, 200))
        q = int(rng.choice([n, 512, 2048, 8192]))
        k = q + int(rng.integers(0, 200_000))
        host = HOST[0] + HOST[1] * n + HOST[2] * k
        sched, prep = 0.2 * host, 0.3 * host
        new = rng.random() < 0.9
        plan = PLAN if new else 0.0
        per_call = 2e-5
        launch = LAUNCH + plan
        sleep = 2 * launch + 0.01
        gpu = _gpu(q, k)
        enter = t + sched + prep
        exit_ = enter + launch
        done = max(exit_, enter + sleep + gpu)
        end = done + 0.5 * host
        rows.append([i, t, end, n, q, k, k // max(n, 1), t + sched, done, 32,
                     per_call + plan, 32 * per_call + plan, enter, exit_, launch, gpu, sleep,
                     int(clean)])
        t = end
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def test_parts_are_recovered_from_a_probe_log(tmp_path):
    _write_log(tmp_path / "steps.csv", np.random.default_rng(0))
    steps = parts_from_log(tmp_path / "steps.csv")
    assert len(steps) == 400
    fit = fit_parts(steps)
    c = dict(zip(fit["features"], fit["coef_s"]))
    assert c["new_shape"] == pytest.approx(PLAN, rel=1e-6)
    assert c["host_forward"] == pytest.approx(LAUNCH, rel=1e-6)
    assert [c["constant"], c["requests"], c["kv_tokens"]] == pytest.approx(HOST, rel=1e-4)
    assert [c["gpu_constant"], c["gpu_query_tokens"], c["gpu_attention_pairs_per_1e6"],
            c["gpu_kv_tokens"]] == pytest.approx(GPU, rel=1e-4)
    assert fit["domain"]["query_tokens"] <= 8192 and fit["parts"]["gpu_side_steps"] > 4


def test_the_assembled_step_is_host_plus_the_longer_of_launches_and_kernels(tmp_path):
    _write_log(tmp_path / "steps.csv", np.random.default_rng(1))
    fit = fit_parts(parts_from_log(tmp_path / "steps.csv"))
    small = dict(num_requests=4, query_tokens=4, kv_tokens=4000, attention_pairs=16_000,
                 new_shape=1)
    big = dict(num_requests=1, query_tokens=16384, kv_tokens=400_000,
               attention_pairs=16384 * 400_000, new_shape=0)  # past every logged step
    t_small, t_big = predict_steps(fit, [small, big])
    host_small = HOST[0] + HOST[1] * 4 + HOST[2] * 4000
    assert t_small == pytest.approx(host_small + PLAN + LAUNCH, rel=0.02)  # launch-bound
    host_big = HOST[0] + HOST[1] + HOST[2] * 400_000
    assert t_big == pytest.approx(host_big + _gpu(16384, 400_000), rel=1e-3)  # GPU-bound


def test_unclean_steps_are_left_out_and_too_few_gpu_bound_steps_refuse(tmp_path):
    _write_log(tmp_path / "steps.csv", np.random.default_rng(2), clean=False)
    assert parts_from_log(tmp_path / "steps.csv") == []
    steps = [dict(num_requests=1, query_tokens=1, kv_tokens=10, attention_pairs=10,
                  max_kv_tokens=10, schedule_s=1e-3, prepare_s=1e-3, post_s=1e-3,
                  plan_s=0.0, launch_s=0.02, gpu_s=0.003)] * 10
    with pytest.raises(ValueError, match="GPU sets the forward"):
        fit_parts(steps)


def test_a_step_the_probe_did_not_see_has_no_parts():
    cols = ForwardProbe.columns({}, 0.0)
    assert len(cols) == len(FORWARD_COLUMNS) and cols[-1] == 0 and np.isnan(cols[0])


def test_the_parts_model_runs_in_llmsim_as_an_engine(tmp_path):
    _write_log(tmp_path / "steps.csv", np.random.default_rng(3))
    fit = fit_parts(parts_from_log(tmp_path / "steps.csv"))
    d = tmp_path / "fits" / "h200" / "llama-3.1-8b"
    d.mkdir(parents=True)
    (d / "engine_step_fit.json").write_text(json.dumps({"hf_cb_parts": fit}))
    cfg = EngineFitConfig(engine="hf_cb_parts", fits_dir=str(tmp_path / "fits"))
    lat = EngineFitLatency("llama-3.1-8b", "h200", 1, cfg)
    shape = StepShape(prefill_chunks=((2048, 0),), num_decode_seqs=0, decode_context_sum=0,
                      decode_context_max=0)
    first, again = lat.step_time_s(shape), None
    lat.advance(shape, 1)
    again = lat.step_time_s(shape)
    coef = np.array(fit["coef_s"])
    want = predict("parts", coef, HINGE_WIDTH_S, 1, 2048, 2048, 2048 * 2048 / 1e6, 0)
    assert again == pytest.approx(want) and first == pytest.approx(want + PLAN, rel=1e-6)
    assert lat.domain() is not None


def test_shape_costs_pair_each_prompt_size_with_its_second_run(tmp_path):
    from calibration.capture_workload import rows, sizes
    from calibration.step_parts import shape_costs

    trace = rows()
    assert [p for _, p, _ in trace] == sizes() + sizes()[::-1]
    assert all(b - a >= 1.0 for (a, _, _), (b, _, _) in zip(trace, trace[1:]))
    lines = ["step,schedule_s,end_s,num_requests,query_tokens"]
    t, seen = 0.0, set()
    for i, (_, p, _) in enumerate(trace):
        d = 1e-5 * p + (0.2 if p not in seen else 0.0)
        seen.add(p)
        lines += [f"{2 * i},{t},{t + d},1,{p}", f"{2 * i + 1},{t + d},{t + d + 0.03},1,1"]
        t += d + 0.03
    (tmp_path / "steps.csv").write_text("\n".join(lines) + "\n")
    costs = shape_costs(tmp_path / "steps.csv")
    assert [c["query_tokens"] for c in costs] == sorted(sizes())
    assert all(c["new_shape_s"] == pytest.approx(0.2) for c in costs)


def test_a_measured_new_shape_cost_is_kept_and_the_rest_fitted_around_it():
    from calibration.step_fit import fit_steps

    true = np.array([0.002, 4e-5, 1.1e-6, 0.16, 0.020, 3e-5, 1.1e-3])
    steps = _hinge_steps(np.random.default_rng(4), 500, true, new_share=0.2)
    fit = fit_steps(steps, "hinge", new_shape_s=0.16)
    assert fit["coef_s"][3] == 0.16 and fit["new_shape_fixed_s"] == 0.16
    assert fit["fit_mape"] < 0.01 and \
        fit["fit_new_shape_steps"] == sum(s["new_shape"] for s in steps)


def test_a_rare_new_shape_cost_is_the_median_excess_over_the_replayed_steps():
    from calibration.step_fit import fit_steps

    true = np.array([0.002, 4e-5, 1.1e-6, 0.08, 0.020, 3e-5, 1.1e-3])
    steps = _hinge_steps(np.random.default_rng(5), 300, true, new_share=0.1)
    for s in [s for s in steps if s["new_shape"]][:3]:
        s["duration_s"] -= 0.05  # flagged new but built less (big steps run without a graph)
    assert fit_steps(steps, "hinge", "excess")["new_shape_fixed_s"] == \
        pytest.approx(0.08, rel=0.05)
    # too few replayed steps: a free fit, no fixed cost
    assert "new_shape_fixed_s" not in fit_steps(steps[:15], "hinge", "excess")


def test_a_committed_shape_cost_run_gives_the_graph_engine_its_capture_cost(tmp_path):
    from calibration.step_parts import new_shape_cost

    d = tmp_path / "h200" / "capture_graph"
    d.mkdir(parents=True)
    trace = "calibration/engine_grid/workloads/capture_sizes.csv"
    (d / "case.json").write_text(json.dumps({"case": {
        "name": "capture_graph", "model": "llama-3.1-8b", "trace": trace, "use_cuda_graph": True}}))
    lines = ["step,schedule_s,end_s,num_requests,query_tokens"]
    for i, (q, d_s) in enumerate([(100, 0.25), (700, 0.31), (700, 0.05), (100, 0.04)]):
        lines.append(f"{i},{i},{i + d_s},1,{q}")
    (d / "steps.csv").write_text("\n".join(lines) + "\n")
    assert new_shape_cost("h200", "llama-3.1-8b", graph=True, root=tmp_path) == \
        pytest.approx(0.235)  # median of 0.26 and 0.21
    assert new_shape_cost("h200", "llama-3.1-8b", graph=False, root=tmp_path) is None
    assert new_shape_cost("h200", "qwen2.5-7b", graph=True, root=tmp_path) is None
    assert new_shape_cost("h100", "llama-3.1-8b", graph=True, root=tmp_path) is None


def _trace_steps(host=(0.05, 1e-5), gpu=(0.004, 3e-5, 1.5e-3, 1.4e-6), every=4, seed=0):
    """Steps of a synthetic ``parts: trace`` run: wall = host + kernels; every ``every``-th
    traced (its kernel time known, its host side slowed by the profiler, as on a GPU)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(240):
        n = int(rng.choice([1, 4, 16, 64, 256]))
        q = n if i % 5 else int(rng.choice([512, 2048, 8192]))  # every 5th a prefill
        k = int(rng.integers(q, 70_000))
        kernels = gpu[0] + gpu[1] * q + gpu[2] * q * k / 1e6 + gpu[3] * k
        wall = host[0] + host[1] * n + kernels
        traced = i % every == 0
        rows.append(dict(num_requests=n, query_tokens=q, kv_tokens=k, attention_pairs=q * k,
                         max_kv_tokens=k, new_shape=0, step_s=wall + (0.12 if traced else 0.0),
                         gpu_s=kernels if traced else float("nan"), run="r"))
    return rows


def test_trace_parts_recover_host_and_kernel_time_and_add_them():
    from calibration.step_parts import fit_trace_parts

    fit = fit_trace_parts(_trace_steps())
    c0, cn, ck, plan, launch, gq, gp, g0, gk = fit["coef_s"]
    assert (plan, launch) == (0.0, 0.0)  # the host does not overlap the kernels
    assert c0 == pytest.approx(0.05, rel=0.05) and cn == pytest.approx(1e-5, rel=0.2)
    assert gq == pytest.approx(3e-5, rel=0.05) and gp == pytest.approx(1.5e-3, rel=0.05)
    # the profiler's host slowdown on traced steps is never read as host time
    steps = [s for s in _trace_steps(seed=1) if s["gpu_s"] != s["gpu_s"]]
    pred = predict_steps(fit, steps)
    assert np.abs(pred / np.array([s["step_s"] for s in steps]) - 1).max() < 0.02
    assert fit["domain"]["query_tokens"] == 8192


def test_trace_parts_need_traced_and_untraced_decodes():
    from calibration.step_parts import fit_trace_parts

    only_traced = [s for s in _trace_steps(every=1)]
    with pytest.raises(ValueError, match="untraced decode steps"):
        fit_trace_parts(only_traced)
