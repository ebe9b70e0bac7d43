from __future__ import annotations

import json

import numpy as np
import pytest

from llmsim.errors import InputError
from llmsim.latency.base import StepShape
from llmsim.latency.engine_fit import (FIT_FILE, EngineFitConfig, EngineFitLatency, fit_steps,
                                       nnls_relative, shape_features)


def test_fit_recovers_known_coefficients():
    rng = np.random.default_rng(0)
    n = rng.integers(1, 64, 400)
    q = n + rng.integers(0, 900, 400)
    k = q + rng.integers(0, 20000, 400)
    t = 0.05 + 2e-4 * n + 3e-5 * q + 1e-6 * k + 5e-4 * q * k / 1e6
    fit = fit_steps([dict(num_requests=a, query_tokens=b, kv_tokens=c, duration_s=d)
                     for a, b, c, d in zip(n, q, k, t)])
    assert np.allclose(fit["coef_s"], [0.05, 2e-4, 3e-5, 1e-6, 5e-4], rtol=1e-6)
    assert fit["fit_mape"] < 1e-9


def test_nnls_never_returns_negative_coefficients():
    rng = np.random.default_rng(1)
    x = np.c_[np.ones(200), rng.random(200)]
    t = 1.0 - 0.5 * x[:, 1] + 0.01 * rng.random(200)  # the true slope is negative
    assert (nnls_relative(x, t) >= 0).all()


def test_shape_features_and_fused_runs_match_step_by_step(tmp_path):
    d = tmp_path / "h100" / "m"
    d.mkdir(parents=True)
    (d / FIT_FILE).write_text(json.dumps({"hf_cb": {"coef_s": [0.07, 1e-4, 3e-5, 1e-6, 9e-4]}}))
    lat = EngineFitLatency("m", "h100", 1, EngineFitConfig(profiles_dir=str(tmp_path)))
    s = StepShape(((100, 50),), 3, 300, 120)
    assert shape_features(s) == (4, 103, 450)
    dec = StepShape((), 4, 400, 120)
    run = lat.decode_run_end_times_s(dec, 5)
    steps = np.cumsum([lat.step_time_s(StepShape((), 4, 400 + 4 * i, 120 + i)) for i in range(5)])
    np.testing.assert_allclose(run, steps, rtol=1e-12)


def test_missing_profile_and_tp_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="no fitted engine profile"):
        EngineFitLatency("m", "h100", 1, EngineFitConfig(profiles_dir=str(tmp_path)))
    with pytest.raises(InputError, match="TP 1"):
        EngineFitLatency("m", "h100", 2, EngineFitConfig(profiles_dir=str(tmp_path)))
