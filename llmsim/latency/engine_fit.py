"""A serving engine's own step cost, fitted from the steps it logged on a calibration workload.

Used for the fidelity cases (issue #4): transformers' continuous-batching engine on the GPU
machines spends ~0.1 s of mostly host time per step whatever the batch, and its ``paged|sdpa``
attention masks the whole batch, so its cost grows with (query tokens x KV tokens in the batch),
not with what an ideal kernel would read. Both facts are in the features:

    t = c0 + c_req * requests + c_q * query_tokens + c_kv * kv_tokens + c_qk * q x kv / 1e6

Fitted by non-negative least squares on relative error (every step weighs the same share),
rescaled so the median step is unbiased, from
``calibration/validation/<gpu>/calib_*<model>*`` runs only: the validation cases never feed it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from llmsim.errors import InputError
from llmsim.latency.base import LatencyModel, StepShape
from llmsim.latency.profiled import profiles_root

FEATURES = ("constant", "requests", "query_tokens", "kv_tokens", "query_x_kv_per_1e6")
FIT_FILE = "engine_step_fit.json"


class EngineFitConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["engine_fit"] = "engine_fit"
    engine: str = Field("hf_cb", description="which engine's step log the fit came from")
    profiles_dir: str | None = Field(None, description="default: calibration/profiles")


def features(num_requests, query_tokens, kv_tokens) -> np.ndarray:
    n, q, k = (np.asarray(x, dtype=float) for x in (num_requests, query_tokens, kv_tokens))
    return np.stack([np.ones_like(q), n, q, k, q * k / 1e6], axis=-1)


def shape_features(shape: StepShape) -> tuple[int, int, int]:
    """(requests, query tokens, KV tokens read incl. the new ones) of one step."""
    q = shape.num_prefill_tokens + shape.num_decode_seqs
    kv = sum(c + n for n, c in shape.prefill_chunks) + shape.decode_context_sum
    return len(shape.prefill_chunks) + shape.num_decode_seqs, q, kv


def nnls_relative(x: np.ndarray, t: np.ndarray, iters: int = 20) -> np.ndarray:
    """Least squares of relative error with coefficients >= 0 (drop the negative ones, refit:
    with five features this active-set loop ends in a few rounds)."""
    w = 1.0 / t
    active = np.ones(x.shape[1], dtype=bool)
    coef = np.zeros(x.shape[1])
    for _ in range(iters):
        sol, *_ = np.linalg.lstsq(x[:, active] * w[:, None], t * w, rcond=None)
        coef[:] = 0.0
        coef[active] = sol
        if (sol >= 0).all():
            break
        active[np.flatnonzero(active)[sol < 0]] = False
    return coef


def fit_steps(steps: list[dict]) -> dict:
    """Fit from step rows with keys num_requests, query_tokens, kv_tokens, duration_s."""
    n = np.array([s["num_requests"] for s in steps])
    q = np.array([s["query_tokens"] for s in steps])
    k = np.array([s["kv_tokens"] for s in steps])
    t = np.array([s["duration_s"] for s in steps])
    x = features(n, q, k)
    coef = nnls_relative(x, t)
    # least squares of relative error shrinks predictions (it pays less to under-predict):
    # rescale so the median step is predicted without bias
    median_scale = float(np.median(t / (x @ coef)))
    coef = coef * median_scale
    err = np.abs(x @ coef - t) / t
    return {"features": list(FEATURES), "coef_s": [float(c) for c in coef],
            "fit_steps": int(len(t)), "median_scale": median_scale, "fit_mape": float(err.mean()),
            "fit_p90_abs_rel_error": float(np.percentile(err, 90))}


class EngineFitLatency(LatencyModel):
    def __init__(self, model: str, gpu: str, tp: int, cfg: EngineFitConfig) -> None:
        if tp != 1:
            raise InputError(f"latency.kind engine_fit: fitted at TP 1 only (got tp={tp})")
        path = profiles_root(cfg.profiles_dir) / gpu / model / FIT_FILE
        if not path.exists():
            raise InputError(f"latency.kind engine_fit: no fitted engine profile for {gpu}/{model} "
                             f"({path}); run `llmsim calibration fit-engine`")
        fits = json.loads(path.read_text())
        if cfg.engine not in fits:
            raise InputError(f"latency.engine: {cfg.engine!r} not in {path} ({sorted(fits)})")
        self.coef = np.asarray(fits[cfg.engine]["coef_s"], dtype=float)
        self.path = path

    def step_time_s(self, shape: StepShape) -> float:
        n, q, k = shape_features(shape)
        c = self.coef
        return float(c[0] + c[1] * n + c[2] * q + c[3] * k + c[4] * q * k / 1e6)

    def decode_run_end_times_s(self, shape: StepShape, num_steps: int) -> np.ndarray:
        n, q, k = shape_features(shape)
        ks = k + np.arange(num_steps) * shape.num_decode_seqs
        return np.cumsum(features(np.full(num_steps, n), np.full(num_steps, q), ks) @ self.coef)


def steps_from_log(path: Path) -> list[dict]:
    """Rows of a replay ``steps.csv`` with their measured duration."""
    import csv

    out = []
    with path.open() as f:
        for r in csv.DictReader(f):
            d = float(r["end_s"]) - float(r["schedule_s"])
            if d > 0 and int(r["num_requests"]) > 0:
                out.append(dict(num_requests=int(r["num_requests"]),
                                query_tokens=int(r["query_tokens"]),
                                kv_tokens=int(r["kv_tokens"]), duration_s=d))
    return out
