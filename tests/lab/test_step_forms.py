"""The hinge form of an engine step's cost: a forward that costs the longer of its host launches
and its GPU work (see ``calibration.step_forms``)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from calibration.engine_fit import FIT_FILE, EngineFitConfig, EngineFitLatency
from calibration.step_fit import _design, _weights, fit_steps, host_scale, predict_fit
from calibration.step_forms import HINGE_WIDTH_S, predict, scaled
from llmsim.latency.base import StepShape

TRUE = np.array([0.002, 4e-5, 1.1e-6, 0.038, 0.020, 3e-5, 1.1e-3])  # a fast H200 step, roughly


def _steps(rng, count=600, coef=TRUE, new_share=0.9):
    """Hinge-priced steps of six runs, ``new_share`` of them building a new shape."""
    n = rng.integers(1, 40, count)
    q = np.where(rng.random(count) < 0.5, n, rng.choice([256, 512, 1024], count))
    k = q + rng.integers(0, 40000, count)
    b = (rng.random(count) < new_share).astype(float)
    t = predict("hinge", coef, HINGE_WIDTH_S, n, q, k, q * k / 1e6, b)
    return [dict(num_requests=a, query_tokens=c, kv_tokens=d, new_shape=int(e), duration_s=f,
                 run=f"r{i % 6}") for i, (a, c, d, e, f) in enumerate(zip(n, q, k, b, t))]


def test_hinge_fit_recovers_a_hinge_and_a_linear_fit_cannot():
    steps = _steps(np.random.default_rng(0))
    hinge, linear = fit_steps(steps, "hinge"), fit_steps(steps, "linear")
    assert hinge["form"] == "hinge" and linear["form"] == "linear"
    assert hinge["fit_mape"] < 1e-3
    assert linear["fit_mape"] > 0.02  # the corner is not a straight line
    # the queries are nearly free below the corner and cost the GPU's price above it
    np.testing.assert_allclose(hinge["coef_s"][2], TRUE[2], rtol=0.02)  # per KV token
    np.testing.assert_allclose(hinge["coef_s"][4:], TRUE[4:], rtol=0.02)


def test_a_hinge_fit_prices_query_tokens_only_past_the_corner(tmp_path):
    fit = fit_steps(_steps(np.random.default_rng(1)), "hinge")
    (tmp_path / "h100" / "m").mkdir(parents=True)
    (tmp_path / "h100" / "m" / FIT_FILE).write_text(json.dumps({"hf_cb": fit}))
    lat = EngineFitLatency("m", "h100", 1, EngineFitConfig(fits_dir=str(tmp_path),
                                                           plan_cache="warm"))
    assert lat.form == "hinge"

    def cost(q):  # one prefill chunk of q tokens beside 12 decodes, 20k KV tokens in all
        return lat.step_time_s(StepShape(((q, 0),), 12, 20000 - q, 2000))

    assert cost(256) - cost(64) < 0.1 * (cost(1024) - cost(512))
    dec = StepShape((), 8, 8000, 1200)
    run = lat.decode_run_end_times_s(dec, 6)
    one_by_one = np.cumsum([lat.step_time_s(StepShape((), 8, 8000 + 8 * i, 1200 + i))
                            for i in range(6)])
    np.testing.assert_allclose(run, one_by_one, rtol=1e-12)


def test_scaling_a_hinge_fit_scales_every_step_exactly():
    fit = {"form": "hinge", "coef_s": list(TRUE), "width_s": HINGE_WIDTH_S}
    x = dict(n=np.array([1, 16, 30]), q=np.array([1, 512, 1024]), k=np.array([900, 20000, 40000]))
    before = predict("hinge", TRUE, HINGE_WIDTH_S, x["n"], x["q"], x["k"], x["q"] * x["k"] / 1e6, 1)
    s = scaled(fit, 1.37)
    after = predict("hinge", np.array(s["coef_s"]), s["width_s"], x["n"], x["q"], x["k"],
                    x["q"] * x["k"] / 1e6, 1)
    np.testing.assert_allclose(after, 1.37 * before, rtol=1e-12)
    steps = [{**r, "duration_s": 1.37 * r["duration_s"]} for r in _steps(np.random.default_rng(2))]
    assert host_scale(fit, steps) == pytest.approx(1.37, rel=1e-9)


def test_a_hinge_fit_is_unbiased_in_total_and_never_negative():
    rng = np.random.default_rng(4)
    steps = [{**r, "duration_s": r["duration_s"] * rng.choice([1.0, 1.4], p=[0.7, 0.3])}
             for r in _steps(rng)]  # the host's slow state on 30% of steps
    fit = fit_steps(steps, "hinge")
    assert min(fit["coef_s"]) >= 0
    x, t = _design(steps)
    share = _weights(steps)
    assert (share * predict_fit(fit, x)).sum() == pytest.approx((share * t).sum(), rel=1e-9)


def test_an_unknown_form_is_a_clear_error(tmp_path):
    from llmsim.errors import InputError

    (tmp_path / "h100" / "m").mkdir(parents=True)
    (tmp_path / "h100" / "m" / FIT_FILE).write_text(json.dumps(
        {"hf_cb": {"form": "cubic", "coef_s": [0.1]}}))
    with pytest.raises(InputError, match="form 'cubic' is not one of"):
        EngineFitLatency("m", "h100", 1, EngineFitConfig(fits_dir=str(tmp_path)))


def test_committed_fits_use_each_gpus_chosen_form():
    """``llmsim-lab fit-engine`` writes the hinge for H200's continuous batching and
    the linear form elsewhere (``HINGE_GPUS``: chosen on held-out runs)."""
    from calibration.engine_fit import fits_root
    from calibration.fidelity_fit import cb_form

    fits = sorted(fits_root().glob(f"*/*/{FIT_FILE}"))
    assert len(fits) >= 4
    for path in fits:
        gpu, fit = path.parents[1].name, json.loads(path.read_text())
        assert fit["hf_cb"].get("form", "linear") == cb_form(gpu), path
        assert fit["hf_generate"].get("form", "linear") == "linear", path
    assert cb_form("h200") == "hinge" and cb_form("h100") == "linear"
