"""A prefill with k of its n prompt tokens cached (a prefix-cache hit), measured on the GPU as
whole-model CUDA-graph steps (``calibration/prefix_steps.py``), against what the kernels model
prices for the same step: a chunk of n - k tokens over k cached ones."""
from __future__ import annotations

import pandas as pd
import pytest

from llmsim.latency.base import StepShape
from llmsim.latency.profiled import ProfiledConfig, ProfiledLatency, load_profile
from llmsim.models import resolve_gpu, resolve_model
from tests.conftest import REPO

PROFILES = REPO / "llmsim" / "profiles"
CASES = sorted((p.parent.parent.name, p.parent.name) for p in PROFILES.glob("*/*/prefix_steps.csv"))


def _steps(gpu: str, model: str) -> pd.DataFrame:
    d = pd.read_csv(PROFILES / gpu / model / "prefix_steps.csv")
    # "masked": the kernel the committed attention profiles were timed with; "none": no cache
    return d[d["kernel"].isin(["none", "masked"])]


def test_prefix_step_measurements_are_committed():
    assert ("h200", "llama-3.1-8b") in CASES and ("h200", "qwen2.5-7b") in CASES


@pytest.mark.parametrize("gpu,model", CASES)
def test_kernels_model_prices_prefix_hits_as_measured(gpu, model):
    load_profile.cache_clear()
    lat = ProfiledLatency(resolve_model(model), resolve_gpu(gpu), 1, ProfiledConfig(engine="kernels"))
    d = _steps(gpu, model)
    pred = [lat.step_time_s(StepShape(prefill_chunks=((r.new_tokens, r.cached_tokens),)))
            for r in d.itertuples()]
    err = (pd.Series(pred, index=d.index) / d["time_s"] - 1).abs()
    # measured: median 0.8% (llama) / 1.0% (qwen), worst 5.1% / 2.9%
    assert err.median() < 0.03 and err.max() < 0.08, err.describe()


@pytest.mark.parametrize("gpu,model", CASES)
def test_cached_tokens_make_the_measured_and_priced_step_cheaper(gpu, model):
    load_profile.cache_clear()
    lat = ProfiledLatency(resolve_model(model), resolve_gpu(gpu), 1, ProfiledConfig(engine="kernels"))
    for n, g in _steps(gpu, model).groupby("prompt_tokens"):
        g = g.sort_values("cached_tokens")
        assert g["time_s"].is_monotonic_decreasing, n
        pred = [lat.step_time_s(StepShape(prefill_chunks=((r.new_tokens, r.cached_tokens),)))
                for r in g.itertuples()]
        assert all(a > b for a, b in zip(pred, pred[1:])), (n, pred)
