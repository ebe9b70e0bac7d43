"""Inter-token latency: exact where it must be, and the same fused or step by step."""
from __future__ import annotations

import numpy as np
import pytest

from llmsim.metrics.itl import TokenGaps
from llmsim.scenario import load_scenario
from llmsim.simulation import simulate


def test_histogram_percentiles_are_within_a_bin_and_moments_exact():
    rng = np.random.default_rng(3)
    single = rng.lognormal(-4, 1, 5000)
    run = rng.lognormal(-3, 0.5, 300)
    g = TokenGaps()
    g.pending.extend(single.tolist())
    g.add_run(np.concatenate([[5.0], 5.0 + np.cumsum(run)]), 301, 7)  # 300 gaps, 7 rows each
    g.add_run(np.array([9.0, 9.5, 99.0]), 2, 1)  # only the first 2 of 3 ends ran: one gap
    single = np.append(single, 0.5)
    s = g.summary()
    allg = np.concatenate([single, np.repeat(run, 7)])
    assert s["count"] == len(allg)
    assert s["mean"] == pytest.approx(allg.mean(), rel=1e-12)
    assert s["std"] == pytest.approx(allg.std(), rel=1e-9)
    for q in (50, 90, 99):
        exact = np.percentile(allg, q, method="inverted_cdf")
        assert s[f"p{q}"] == pytest.approx(exact, rel=1.2e-3)


def test_no_gaps_is_nan_not_zero():
    s = TokenGaps().summary()
    assert s["count"] == 0 and s["p50"] != s["p50"]


@pytest.mark.parametrize("policy", ["{kind: vllm}", "{kind: sarathi}", "{kind: orca}"])
def test_itl_is_the_same_fused_or_step_by_step(policy):
    sets = ["workload.num_requests=150", f"policy={policy}"]
    fused = simulate(load_scenario(None, sets)).summary["itl_s"]
    steps = simulate(load_scenario(None, [*sets, "simulation.fuse_decode_steps=false"]))
    stepwise = steps.summary["itl_s"]
    assert fused["count"] == stepwise["count"] > 0
    for k in ("p50", "p90", "p99"):
        assert fused[k] == stepwise[k]
    assert fused["mean"] == pytest.approx(stepwise["mean"], rel=1e-12)
    # one gap per output token after the first, over every finished request
    req = steps.requests
    assert stepwise["count"] == int((req["num_generated_tokens"] - 1).clip(lower=0).sum())


def test_itl_mean_is_the_token_weighted_tpot():
    res = simulate(load_scenario(None, ["workload.num_requests=100"]))
    req = res.requests[res.requests["num_generated_tokens"] > 1]
    gaps = (req["finish_s"] - req["first_token_s"]).sum()
    assert res.summary["itl_s"]["mean"] == pytest.approx(
        gaps / (req["num_generated_tokens"] - 1).sum(), rel=1e-9)
