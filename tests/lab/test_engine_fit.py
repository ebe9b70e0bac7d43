from __future__ import annotations

import json

import numpy as np
import pytest

from calibration.engine_fit import (
    FIT_FILE,
    EngineFitConfig,
    EngineFitLatency,
    attention_shape,
    shape_features,
)
from calibration.step_fit import fit_steps
from calibration.step_forms import nnls_relative
from calibration.step_logs import generate_step_shapes, steps_from_generate
from llmsim.errors import InputError
from llmsim.latency.base import StepShape


def test_fit_recovers_known_coefficients():
    rng = np.random.default_rng(0)
    n = rng.integers(1, 64, 400)
    q = n + rng.integers(0, 900, 400)
    k = q + rng.integers(0, 20000, 400)
    new = rng.random(400) < 0.3
    t = 0.05 + 2e-4 * n + 3e-5 * q + 1e-6 * k + 5e-4 * q * k / 1e6 + 0.07 * new
    fit = fit_steps([dict(num_requests=a, query_tokens=b, kv_tokens=c, new_shape=e, duration_s=d)
                     for a, b, c, d, e in zip(n, q, k, t, new)])
    assert np.allclose(fit["coef_s"], [0.05, 2e-4, 3e-5, 1e-6, 5e-4, 0.07], rtol=1e-6)
    assert fit["fit_mape"] < 1e-9 and fit["fit_new_shape_steps"] == int(new.sum())


def test_fit_total_is_unbiased_under_noise():
    """Relative least squares under-predicts noisy steps; the rescale keeps their sum."""
    rng = np.random.default_rng(3)
    n = rng.integers(1, 16, 500)
    t = (0.07 + 1e-3 * n) * rng.choice([1.0, 1.7], 500, p=[0.7, 0.3])  # a slow regime
    fit = fit_steps([dict(num_requests=a, query_tokens=a, kv_tokens=100 * a, duration_s=d)
                     for a, d in zip(n, t)])
    x = np.c_[np.ones(500), n, n, 100 * n, n * 100 * n / 1e6, np.zeros(500)]
    assert (x @ fit["coef_s"]).sum() == pytest.approx(t.sum(), rel=1e-9)


def test_every_run_weighs_the_same_in_a_fit():
    """A long run (1,000 steps at 0.2 s) and a short one (10 at 0.1 s): the fit is their
    run-weighted mean, not pulled to the long run's steps."""
    steps = [dict(num_requests=1, query_tokens=1, kv_tokens=0, attention_pairs=0, duration_s=d,
                  run=r) for r, d, k in (("long", 0.2, 1000), ("short", 0.1, 10)) for _ in range(k)]
    fit = fit_steps(steps)
    assert sum(fit["coef_s"][:3]) == pytest.approx(0.15, rel=1e-9)
    unlabelled = fit_steps([{k: v for k, v in s.items() if k != "run"} for s in steps])
    assert sum(unlabelled["coef_s"][:3]) == pytest.approx((1000 * 0.2 + 10 * 0.1) / 1010, rel=1e-9)


def test_nnls_never_returns_negative_coefficients():
    rng = np.random.default_rng(1)
    x = np.c_[np.ones(200), rng.random(200)]
    t = 1.0 - 0.5 * x[:, 1] + 0.01 * rng.random(200)  # the true slope is negative
    assert (nnls_relative(x, t) >= 0).all()


def _latency(tmp_path, coef, model="m", **cfg):
    d = tmp_path / "h100" / model
    d.mkdir(parents=True, exist_ok=True)
    (d / FIT_FILE).write_text(json.dumps({"hf_cb": {"coef_s": coef}, "hf_generate": {"coef_s": coef}}))
    return EngineFitLatency(model, "h100", 1, EngineFitConfig(fits_dir=str(tmp_path), **cfg))


def test_shape_features_and_fused_runs_match_step_by_step(tmp_path):
    lat = _latency(tmp_path, [0.07, 1e-4, 3e-5, 1e-6, 9e-4])  # an old five-term fit: no plan cost
    s = StepShape(((100, 50),), 3, 300, 120)
    assert shape_features(s) == (4, 103, 450, 103 * 450)
    assert attention_shape(s) == (1, 103, 450)  # one packed row
    dec = StepShape((), 4, 400, 120)
    run = lat.decode_run_end_times_s(dec, 5)
    steps = np.cumsum([lat.step_time_s(StepShape((), 4, 400 + 4 * i, 120 + i)) for i in range(5)])
    np.testing.assert_allclose(run, steps, rtol=1e-12)


def test_padded_shapes_are_per_row():
    pre = StepShape(((300, 0),) * 4, padded=True)
    assert attention_shape(pre) == (4, 300, 300)
    assert shape_features(pre) == (4, 1200, 1200, 4 * 300 * 300)
    dec = StepShape((), 4, 4 * 305, 305, padded=True)
    assert attention_shape(dec) == (4, 1, 305)
    assert generate_step_shapes(4, 300, 3) == [(4, 300, 300), (4, 1, 301), (4, 1, 302)]


def test_plan_cache_charges_each_new_shape_once_per_instance(tmp_path):
    lat = _latency(tmp_path, [0.02, 0, 0, 0, 0, 0.05], engine="hf_generate")
    dec = StepShape((), 4, 4 * 305, 305, padded=True)
    assert lat.step_time_s(dec) == pytest.approx(0.07)
    assert lat.step_time_s(dec) == pytest.approx(0.07)  # pricing a step builds nothing
    a, b = lat.for_instance(), lat.for_instance()
    np.testing.assert_allclose(np.diff(a.decode_run_end_times_s(dec, 4), prepend=0), [0.07] * 4)
    a.advance(dec, 2)  # a run cut after two steps built two plans
    np.testing.assert_allclose(np.diff(a.decode_run_end_times_s(dec, 4), prepend=0),
                               [0.02, 0.02, 0.07, 0.07])
    assert b.step_time_s(dec) == pytest.approx(0.07)  # another engine process: its own cache
    assert lat.step_time_s(dec) == pytest.approx(0.07)
    warm = _latency(tmp_path, [0.02, 0, 0, 0, 0, 0.05], engine="hf_generate", plan_cache="warm")
    assert warm.step_time_s(dec) == pytest.approx(0.02)
    pre = _latency(tmp_path, [0.02, 0, 0, 0, 0, 0.05], prebuilt_shapes=[(4, 1, 306)])
    np.testing.assert_allclose(np.diff(pre.decode_run_end_times_s(dec, 3), prepend=0),
                               [0.07, 0.02, 0.07])


def test_generate_log_marks_a_shape_new_only_the_first_time(tmp_path):
    p = tmp_path / "generate_steps.csv"
    head = "label,variant,round,rows,padded_prompt_tokens,min_prompt_tokens,sum_prompt_tokens,new_tokens,step,step_s\n"
    body = "".join(f"g,sync,{r},2,10,5,15,3,{j},0.1\n" for r in range(2) for j in range(3))
    p.write_text(head + body + "g,nosync,0,2,20,5,25,3,0,0.3\ng,threads1,0,2,20,5,25,3,1,0.1\n")
    rows = steps_from_generate(p)
    assert [r["new_shape"] for r in rows] == [1, 1, 1, 0, 0, 0]  # threads1 is not fitted
    assert rows[0] == dict(num_requests=2, query_tokens=20, kv_tokens=20, attention_pairs=200,
                           new_shape=1, duration_s=0.1, max_kv_tokens=10)
    assert rows[1]["query_tokens"] == 2 and rows[1]["kv_tokens"] == 22
    both = steps_from_generate(p, variants=("sync", "threads1"))
    assert both[-1]["new_shape"] == 0  # the nosync call before it built (2, 1, 21)


def test_missing_profile_and_tp_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="no fitted engine profile"):
        EngineFitLatency("m", "h100", 1, EngineFitConfig(fits_dir=str(tmp_path)))
    with pytest.raises(InputError, match="TP 1"):
        EngineFitLatency("m", "h100", 2, EngineFitConfig(fits_dir=str(tmp_path)))


def test_simulated_engine_process_reuses_plans_across_batches(tmp_path):
    """Two static batches of the same padded shape: the first builds every plan, the second
    reuses them; a warm process builds none (wired through the instance's ``advance``)."""
    from llmsim.scenario import scenario_from_dict
    from llmsim.simulation import simulate

    _latency(tmp_path, [0.02, 0, 0, 0, 0, 0.05], "llama-3.1-8b")  # writes the profile
    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n" + "0,100,10\n" * 32)

    def makespan(cache: str) -> float:
        sc = scenario_from_dict({
            "model": "llama-3.1-8b", "cluster": {"gpu": "h100", "max_model_len": 4096},
            "workload": {"kind": "trace", "path": str(trace)},
            "policy": {"kind": "static", "max_num_seqs": 16, "reserve_tokens": 110},
            "latency": {"kind": "engine_fit", "engine": "hf_generate", "plan_cache": cache,
                        "fits_dir": str(tmp_path)}}, "t", tmp_path)
        return float(simulate(sc).requests["finish_s"].max())

    assert makespan("cold") == pytest.approx(10 * 0.07 + 10 * 0.02)
    assert makespan("warm") == pytest.approx(20 * 0.02)


def test_host_scale_measures_a_host_against_a_fit_and_scales_every_step(tmp_path):
    from calibration.step_fit import host_scale

    fit = {"coef_s": [0.02, 1e-3, 0, 0, 0, 0.05]}
    steps = [dict(num_requests=n, query_tokens=n, kv_tokens=10 * n, new_shape=new,
                  duration_s=1.3 * (0.02 + 1e-3 * n + 0.05 * new))
             for n, new in ((1, 1), (4, 1), (8, 0), (16, 1))]
    assert host_scale(fit, steps) == pytest.approx(1.3)
    base = _latency(tmp_path, fit["coef_s"])
    fast = _latency(tmp_path, fit["coef_s"], host_scale=0.5)
    dec = StepShape((), 4, 400, 120)
    assert fast.step_time_s(dec) == pytest.approx(0.5 * base.step_time_s(dec))
    np.testing.assert_allclose(fast.decode_run_end_times_s(dec, 3),
                               0.5 * base.decode_run_end_times_s(dec, 3))


def _steps(q_max, k_max, cost, rng, count=300, run="a"):
    q = rng.integers(1, q_max, count)
    k = q + rng.integers(0, k_max, count)
    n = rng.integers(1, 32, count)
    return [dict(num_requests=int(a), query_tokens=int(b), kv_tokens=int(c), duration_s=cost(b, c),
                 run=run) for a, b, c in zip(n, q, k)]


def test_steps_past_the_range_get_their_own_part_and_the_model_switches_per_step(tmp_path):
    """Long steps fitted apart (``with_beyond``) leave the short steps' fit as it was; the
    latency model prices a step past the main range with that part, a fused run step by step."""
    from calibration.step_fit import past, predict_fit, with_beyond

    rng = np.random.default_rng(3)
    short = _steps(1024, 20_000, lambda q, k: 0.02 + 2e-5 * q + 1e-7 * k, rng, run="short")
    long = _steps(8192, 250_000, lambda q, k: 0.05 + 6e-5 * q + 4e-7 * k, rng, run="long")
    long = [s for s in long if s["query_tokens"] > 1024]
    main = fit_steps(short)
    assert with_beyond(main, short, "linear") is main  # nothing past the range: unchanged
    fit = with_beyond(main, short + long, "linear")
    assert fit["coef_s"] == main["coef_s"] and fit["fitted_domain"] == main["domain"]
    assert fit["domain"]["query_tokens"] > main["domain"]["query_tokens"]
    x = np.array([[1, s["num_requests"], s["query_tokens"], s["kv_tokens"],
                   s["query_tokens"] * s["kv_tokens"] / 1e6, 0] for s in long], dtype=float)
    t = np.array([s["duration_s"] for s in long])
    assert np.median(np.abs(predict_fit(fit, x) / t - 1)) < 0.05
    assert np.median(np.abs(predict_fit(main, x) / t - 1)) > 0.2  # the short fit extrapolated
    assert past(main["domain"], 4, 2000, 100) and not past(main["domain"], 4, 100, 100)
    d = tmp_path / "h100" / "m"
    d.mkdir(parents=True)
    (d / FIT_FILE).write_text(json.dumps({"hf_cb": fit}))
    lat = EngineFitLatency("m", "h100", 1, EngineFitConfig(fits_dir=str(tmp_path)))
    assert lat.domain().max_by_axis["query_tokens"] == fit["domain"]["query_tokens"]
    big = StepShape(((4000, 100_000),))
    assert lat.step_time_s(big) == pytest.approx(float(predict_fit(fit, np.array(
        [[1, 1, 4000, 104_000, 4000 * 104_000 / 1e6, 0]]))[0]))
    # a decode run that grows past the KV range switches part at the step that crosses it
    limit = fit["fitted_domain"]["kv_tokens"]
    dec = StepShape((), 8, int(limit) - 16, 5000)
    run = lat.decode_run_step_times_s(dec, 5)
    one = [lat.step_time_s(StepShape((), 8, int(limit) - 16 + 8 * i, 5000 + i)) for i in range(5)]
    np.testing.assert_allclose(run, one, rtol=1e-12)


def test_cuda_graph_runs_are_another_engine():
    from calibration.cases import run_engine

    cb = {"case": {"kind": "cb"}}
    assert run_engine(cb) == "hf_cb"
    assert run_engine({**cb, "resolved": {"use_cuda_graph": [True, True]}}) == "hf_cb_graph"
    assert run_engine({**cb, "resolved": {"use_cuda_graph": [False, False]}}) == "hf_cb"
    assert run_engine({"case": {"kind": "cb", "use_cuda_graph": True}}) == "hf_cb_graph"
    assert run_engine({"case": {"kind": "static"}}) == "hf_generate"


def test_graph_mode_builds_one_graph_per_padded_query_read_and_longest_row(tmp_path):
    """In CUDA-graph mode a step is new when its graph (query tokens padded to 64, KV read from
    the cache padded to 16,384, longest row's KV padded to a power of two >= 1,024) was never
    captured, the replay's warm-up captured its own graphs first; an eager step is new per
    (query, KV) plan."""
    from calibration.step_logs import graph_shape, steps_from_log, warmup_graph_shapes

    log = tmp_path / "steps.csv"
    # (query, KV incl. the new tokens, longest row's KV)
    steps = [(100, 100, 100), (120, 300, 200), (1, 301, 201), (1, 302, 202), (130, 500, 300),
             (4, 260, 65), (120, 20000, 900), (120, 20000, 1500)]
    log.write_text("step,schedule_s,end_s,num_requests,query_tokens,num_decode,kv_tokens,"
                   "max_kv_tokens,requests_q_pos\n"
                   + "".join(f"{i},{i},{i + 0.1},1,{q},0,{k},{m},[]\n"
                             for i, (q, k, m) in enumerate(steps)))
    # (1, 301): the warm-up's decode graph (4 rows, read < 16,384) is the same padded size;
    # the last step's longest row passes 1,024: captured again
    assert [s["new_shape"] for s in steps_from_log(log, graph=True)] == [1, 1, 0, 0, 1, 0, 1, 1]
    assert [s["new_shape"] for s in steps_from_log(log)] == [1, 1, 1, 1, 1, 1, 1, 0]
    assert graph_shape(100, 100, 1) == graph_shape(128, 128, 1024) != graph_shape(129, 129, 1)
    assert graph_shape(100, 16484, 10) != graph_shape(100, 16485, 10)  # read 16,384 vs 16,385
    assert graph_shape(100, 500, 1024) != graph_shape(100, 500, 1025)
    assert graph_shape(100, 500, 2048) == graph_shape(100, 500, 1025)
    assert graph_shape(4, 260, 65) in warmup_graph_shapes()
    d = tmp_path / "fits" / "h100" / "m"
    d.mkdir(parents=True)
    coef = [0.01, 0.0, 0.0, 0.0, 0.0, 0.2]  # linear form: 0.2 s per new shape
    (d / FIT_FILE).write_text(json.dumps({"hf_cb_graph": {"coef_s": coef}}))
    lat = EngineFitLatency("m", "h100", 1, EngineFitConfig(fits_dir=str(tmp_path / "fits"),
                                                           engine="hf_cb_graph"))
    a, b = StepShape(((100, 0),)), StepShape(((120, 0),))
    assert lat.step_time_s(a) == pytest.approx(0.21)
    lat.advance(a, 1)
    assert lat.step_time_s(b) == pytest.approx(0.01)  # same padded size: replayed
    assert lat.step_time_s(StepShape(((120, 500),))) == pytest.approx(0.21)  # reads KV: new
    dec = StepShape((), 3, 900, 300)
    assert lat.decode_run_step_times_s(dec, 4) == pytest.approx([0.21, 0.01, 0.01, 0.01])
    lat.advance(dec, 4)
    # a decode run whose read KV crosses a padding step captures again there
    near = StepShape((), 3, 16386, 1000)
    assert lat.decode_run_step_times_s(near, 3) == pytest.approx([0.01, 0.21, 0.01])
    lat.advance(near, 3)
    # ... and where its longest row crosses a power of two (1,024 -> 2,048)
    assert lat.decode_run_step_times_s(StepShape((), 3, 16395, 1024), 3) == pytest.approx(
        [0.01, 0.21, 0.01])
