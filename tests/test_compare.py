"""Comparisons with error bars: bootstrap bands that cover at their nominal rate, P(A beats B)
that is 0.5 for identical configurations and goes to 1 as the gap grows, and the cost model's
own error drawn from its measured held-out residuals, shared by A and B."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from llmsim.analysis.compare import (
    compare_runs,
    compare_values,
    higher_is_better,
    run_pairs,
    scaled_errors,
)
from llmsim.errors import InputError
from llmsim.latency.base import StepShape
from llmsim.latency.error import Perturbed, draw_factors, heldout_errors
from llmsim.latency.roofline import RooflineConfig, RooflineLatency
from llmsim.models import resolve_gpu, resolve_model
from llmsim.scenario import load_scenario
from tests.conftest import REPO


def test_identical_configurations_are_a_coin_flip():
    x = np.random.default_rng(0).normal(1.0, 0.2, 12)
    c = compare_values("goodput.requests_per_s", x, x)
    assert c.p_a_beats_b == 0.5 and c.diff_mean == 0 and c.diff_band == (0.0, 0.0)
    assert c.a_band[0] < c.a_mean < c.a_band[1]


def test_p_a_beats_b_grows_to_one_with_the_gap_and_follows_the_direction():
    rng = np.random.default_rng(1)
    noise_a, noise_b = rng.normal(0, 1, 20), rng.normal(0, 1, 20)
    ps = [compare_values("slo_attainment.both", noise_a + gap, noise_b).p_a_beats_b
          for gap in (0.0, 0.3, 0.8, 3.0)]
    assert all(p < q for p, q in zip(ps, ps[1:])) and ps[-1] > 0.999
    # a latency: lower is better, so A ahead by 3 is A behind
    assert compare_values("ttft_s.p90", noise_a + 3.0, noise_b).p_a_beats_b < 0.001
    assert higher_is_better("goodput.requests_per_s") and higher_is_better("slo_attainment.both")
    assert not higher_is_better("ttft_s.p90") and not higher_is_better("energy.j_per_output_token")
    assert not higher_is_better("cost.usd_per_million_output_tokens")
    assert higher_is_better("cost.goodput_requests_per_usd")


def test_the_band_covers_the_truth_at_its_nominal_rate():
    rng = np.random.default_rng(2)
    hits = 0
    reps = 300
    for i in range(reps):
        x = rng.normal(5.0, 1.0, 15)
        lo, hi = compare_values("x_per_s", x, x, confidence=0.9, seed=i).a_band
        hits += lo <= 5.0 <= hi
    assert 0.84 <= hits / reps <= 0.96, hits / reps


def test_a_perturbed_cost_model_scales_its_steps_by_phase():
    inner = RooflineLatency(resolve_model("llama-3.1-8b"), resolve_gpu("h100"), 1, RooflineConfig())
    p = Perturbed(inner, 1.1, 0.9)
    pre, dec = StepShape(prefill_chunks=((512, 0),)), StepShape((), 8, 8000, 1000)
    assert p.step_time_s(pre) == pytest.approx(1.1 * inner.step_time_s(pre))
    assert p.step_time_s(dec) == pytest.approx(0.9 * inner.step_time_s(dec))
    np.testing.assert_allclose(p.decode_run_step_times_s(dec, 5),
                               0.9 * inner.decode_run_step_times_s(dec, 5))
    for gpu in ("h100", "h200"):
        for engine in ("kernels", "hf_eager"):
            errs = heldout_errors(gpu, engine)
            assert errs is not None and len(errs["prefill"]) >= 20 and len(errs["decode"]) >= 20
    errs = heldout_errors("h100", "kernels")
    f = draw_factors(errs, np.random.default_rng(0))
    lo, hi = 1 / (1 + max(errs["prefill"].max(), errs["decode"].max())), \
        1 / (1 + min(errs["prefill"].min(), errs["decode"].min()))
    assert all(lo <= x <= hi for x in f)


def test_pairs_share_seeds_and_cost_model_draws():
    sc = load_scenario(None, ["workload.num_requests=120"])
    same = compare_runs(run_pairs(sc, sc, range(2), draws=2, cost_model_error=True),
                        ["slo_attainment.both", "ttft_s.p90"])
    # one draw for both sides of a pair (same GPU and engine): identical runs, a coin flip
    assert [c.p_a_beats_b for c in same] == [0.5, 0.5] and same[0].n == 4
    draws = run_pairs(sc, sc, [0], draws=3, cost_model_error=True)
    assert len({round(a["ttft_s.p90"], 9) for a, _ in draws}) == 3  # draws differ
    roof = load_scenario(None, ["latency={kind: roofline}"])
    with pytest.raises(InputError, match="no measured held-out error"):
        run_pairs(roof, roof, [0], cost_model_error=True)


@pytest.mark.slow  # CLI subprocesses: the functions are tested in the default suite
def test_cli_compare_two_fleet_sizes():
    out = subprocess.run([sys.executable, "-m", "llmsim", "compare", "--set-a",
                          "cluster.num_instances=2", "--set-b", "cluster.num_instances=1",
                          "--set", "workload.num_requests=200", "--seeds", "4",
                          "--metric", "tpot_s.p90"], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    row = next(line for line in out.stdout.splitlines() if "tpot_s.p90" in line)
    assert row.rstrip(" │").split()[-1] == "1.000"  # two instances: lower TPOT on every seed
    bad = subprocess.run([sys.executable, "-m", "llmsim", "compare", "--seeds", "1"],
                         capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and "2 replicates" in bad.stderr


def test_scaled_errors_widen_the_draws_and_stay_physical():
    errs = heldout_errors("h100", "kernels")
    assert errs is not None
    big = scaled_errors(errs, 10.0)
    for ph in ("prefill", "decode"):
        assert np.all(big[ph] >= -0.9)  # a step never costs under a tenth of its price
        inner = errs[ph] * 10 > -0.9
        np.testing.assert_allclose(big[ph][inner], 10 * errs[ph][inner])
    spread = [np.std([draw_factors(e, np.random.default_rng(s))[1] for s in range(200)])
              for e in (errs, big)]
    assert spread[1] > 3 * spread[0]
    with pytest.raises(InputError, match="--error-scale"):
        scaled_errors(errs, 0.0)
    sc = load_scenario(None, ["workload.num_requests=80"])
    one = run_pairs(sc, sc, [0], cost_model_error=True)
    ten = run_pairs(sc, sc, [0], cost_model_error=True, error_scale=10.0)
    assert one[0][0]["ttft_s.p90"] != ten[0][0]["ttft_s.p90"]
