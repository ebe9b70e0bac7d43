"""Synthetic generators, trace windowing/scaling/clipping, and request building."""
from __future__ import annotations

import numpy as np
import pytest

from llmsim.errors import InputError
from llmsim.request import ServiceClass
from llmsim.workload import config as wc
from llmsim.workload.source import build_requests, workload_frame
from tests.conftest import REPO


def synth(arrival, prompt=None, output=None, n=20000):
    return wc.SyntheticWorkload(num_requests=n, arrival=arrival,
                                prompt_tokens=prompt or wc.FixedLength(tokens=10),
                                output_tokens=output or wc.FixedLength(tokens=5))


def frame(cfg, seed=0):
    return workload_frame(cfg, np.random.default_rng(seed), REPO)


def test_poisson_rate_and_cv():
    df = frame(synth(wc.PoissonArrivals(rate_per_s=8.0)))
    gaps = np.diff(df["arrival_s"].to_numpy())
    assert df["arrival_s"].iloc[0] == 0.0
    assert 1 / gaps.mean() == pytest.approx(8.0, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.05)


def test_gamma_cv_is_bursty():
    df = frame(synth(wc.GammaArrivals(rate_per_s=5.0, cv=3.0)))
    gaps = np.diff(df["arrival_s"].to_numpy())
    assert 1 / gaps.mean() == pytest.approx(5.0, rel=0.1)
    assert gaps.std() / gaps.mean() == pytest.approx(3.0, rel=0.1)


def test_closed_and_constant_arrivals():
    assert (frame(synth(wc.ClosedArrivals(), n=10))["arrival_s"] == 0).all()
    t = frame(synth(wc.ConstantArrivals(rate_per_s=4.0), n=5))["arrival_s"]
    np.testing.assert_allclose(t, [0, 0.25, 0.5, 0.75, 1.0])


def test_lognormal_lengths_median_and_clip():
    df = frame(synth(wc.ClosedArrivals(), wc.LognormalLength(median_tokens=300, sigma=1.0, max_tokens=2000)))
    assert np.median(df["prompt_tokens"]) == pytest.approx(300, rel=0.05)
    assert df["prompt_tokens"].max() == 2000 and df["prompt_tokens"].min() >= 1


def test_uniform_lengths_bounds_and_bad_bounds():
    df = frame(synth(wc.ClosedArrivals(), wc.UniformLength(min_tokens=3, max_tokens=7)))
    assert df["prompt_tokens"].min() == 3 and df["prompt_tokens"].max() == 7
    with pytest.raises(ValueError, match=r"min_tokens \(9\) exceeds max_tokens \(7\)"):
        wc.UniformLength(min_tokens=9, max_tokens=7)


def test_empirical_resampling_keeps_rows_together():
    emp = wc.EmpiricalLength(path="traces/sharegpt_like_poisson4.csv")
    df = frame(synth(wc.ClosedArrivals(), emp, emp, n=500))
    src = frame(wc.TraceWorkload(path="traces/sharegpt_like_poisson4.csv"))
    pairs = set(zip(src["prompt_tokens"], src["output_tokens"]))
    assert all(p in pairs for p in zip(df["prompt_tokens"], df["output_tokens"]))


def test_same_seed_same_workload_different_seed_differs():
    cfg = synth(wc.PoissonArrivals(rate_per_s=3.0), wc.LognormalLength(median_tokens=100, sigma=1), n=50)
    assert frame(cfg, 1).equals(frame(cfg, 1))
    assert not frame(cfg, 1).equals(frame(cfg, 2))


def test_trace_window_scale_and_clip():
    base = dict(path="traces/sharegpt_like_poisson4.csv")
    full = frame(wc.TraceWorkload(**base))
    win = frame(wc.TraceWorkload(**base, start_s=10, duration_s=20))
    inside = full[(full["arrival_s"] >= 10) & (full["arrival_s"] < 30)]
    assert len(win) == len(inside) and win["arrival_s"].iloc[0] == 0.0
    half = frame(wc.TraceWorkload(**base, time_scale=0.5))
    np.testing.assert_allclose(half["arrival_s"], full["arrival_s"] * 0.5)
    rated = frame(wc.TraceWorkload(**base, target_rate_per_s=10.0))
    assert (len(rated) - 1) / rated["arrival_s"].iloc[-1] == pytest.approx(10.0)
    clipped = frame(wc.TraceWorkload(**base, max_prompt_tokens=100, max_output_tokens=50, max_requests=30))
    assert len(clipped) == 30 and clipped["prompt_tokens"].max() == 100
    assert clipped["output_tokens"].max() <= 50
    closed = frame(wc.TraceWorkload(**base, closed=True))
    assert (closed["arrival_s"] == 0).all()
    with pytest.raises(InputError, match="selects no requests"):
        frame(wc.TraceWorkload(**base, start_s=1e6))


def test_build_requests_applies_slos_and_per_row_overrides(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("arrival_s,prompt_tokens,output_tokens,service_class,ttft_slo_s,deadline_s\n"
                 "0,10,5,best_effort,0.5,\n2,11,6,latency_sensitive,,30\n")
    df = frame(wc.TraceWorkload(path=str(p)))
    reqs = build_requests(df, ttft_slo_s=1.0, tpot_slo_s=0.1, deadline_s=None, slo_scale=2.0)
    assert reqs[0].ttft_slo_s == 1.0 and reqs[1].ttft_slo_s == 2.0
    assert reqs[0].tpot_slo_s == pytest.approx(0.2)
    assert reqs[0].deadline_at_s == float("inf") and reqs[1].deadline_at_s == 2 + 60
    assert reqs[0].service_class == ServiceClass.BEST_EFFORT


def test_mixture_lengths_draw_prompt_and_output_from_the_same_component():
    short = wc.FixedLength(tokens=50)
    long_ = wc.FixedLength(tokens=3000)
    mix_p = wc.MixtureLength(components=[{"weight": 3, "dist": short}, {"weight": 1, "dist": long_}])
    mix_o = wc.MixtureLength(components=[{"weight": 3, "dist": wc.FixedLength(tokens=7)},
                                         {"weight": 1, "dist": wc.FixedLength(tokens=300)}])
    df = frame(synth(wc.ClosedArrivals(), mix_p, mix_o, n=4000))
    assert set(zip(df["prompt_tokens"], df["output_tokens"])) == {(50, 7), (3000, 300)}
    assert (df["prompt_tokens"] == 3000).mean() == pytest.approx(0.25, abs=0.03)
