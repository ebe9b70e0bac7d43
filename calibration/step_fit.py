"""Fitting a real engine's step cost from the steps it logged (``engine_fit`` prices steps
with these fits): the feature matrix of step rows, non-negative least squares of relative error
with every run weighing the same, a new shape's plan cost kept apart, the range a fit saw, and a
``beyond`` part for steps past it (the engine-grid runs).
"""
from __future__ import annotations

from typing import Literal

import numpy as np

from calibration.step_forms import (
    HINGE_WIDTH_S,
    NEW_SHAPE_INDEX,
    TERMS,
    coef_of,
    fit_hinge,
    form_of,
    hinge_start,
    nnls_relative,
    predict,
    scaled,
    width_of,
)
from calibration.step_logs import padded


def features(num_requests, query_tokens, kv_tokens, attention_pairs, new_shape) -> np.ndarray:
    n, q, k, qk, new = (np.asarray(x, dtype=float) for x in
                        (num_requests, query_tokens, kv_tokens, attention_pairs, new_shape))
    return np.stack([np.ones_like(q), n, q, k, qk / 1e6, new], axis=-1)


def _design(steps: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Feature matrix and measured seconds of step rows (keys num_requests, query_tokens,
    kv_tokens, duration_s; optionally attention_pairs, default query x KV: one packed row, and
    new_shape, default 0)."""
    col = {k: np.array([s[k] for s in steps], dtype=float)
           for k in ("num_requests", "query_tokens", "kv_tokens", "duration_s")}
    qk = np.array([s.get("attention_pairs", s["query_tokens"] * s["kv_tokens"]) for s in steps])
    new = np.array([s.get("new_shape", 0) for s in steps], dtype=float)
    return features(col["num_requests"], col["query_tokens"], col["kv_tokens"], qk, new), \
        col["duration_s"]


def _weights(steps: list[dict]) -> np.ndarray:
    """Each step's share of a fit: runs weigh the same however many steps they logged (a long
    calibration run must not pull the fit to its own step mix), per-step within a run."""
    run = [s.get("run", "") for s in steps]
    count: dict[str, int] = {}
    for r in run:
        count[r] = count.get(r, 0) + 1
    return np.array([1.0 / count[r] for r in run])


def fit_steps(steps: list[dict], form: str = "linear",
              new_shape_s: float | Literal["excess"] | None = None) -> dict:
    """Fit one form (``step_forms``) from step rows (see ``_design``). ``new_shape_s``: a new
    shape's cost measured apart (``step_parts.shape_costs``), or ``"excess"``: estimated as the
    median excess of the new-shape steps over the rest (the median, because a few large steps
    flagged new build nothing: the engine runs them without a graph; a free fit where there are
    too few of either). Either way it is kept as that term and the rest is fitted on the steps
    that built nothing: a new-shape step less a constant can come out near zero, which a fit of
    relative error cannot weigh."""
    if new_shape_s is None:
        return _fit_steps(steps, form)
    new = [s for s in steps if s.get("new_shape")]
    replayed = [s for s in steps if not s.get("new_shape")]
    if new_shape_s == "excess" and (len(new) < 5 or len(replayed) < 20):
        return _fit_steps(steps, form)
    fixed = _fit_steps(replayed, form)
    if new_shape_s == "excess":
        x, t = _design(new)
        x[:, -1] = 0.0
        new_shape_s = max(0.0, float(np.median(t - predict_fit(fixed, x))))
    coef = list(fixed["coef_s"])
    coef[NEW_SHAPE_INDEX[form]] = new_shape_s
    return {**fixed, "coef_s": coef, "new_shape_fixed_s": new_shape_s,
            "fit_new_shape_steps": len(new)}


def _fit_steps(steps: list[dict], form: str) -> dict:
    x, t = _design(steps)
    share = _weights(steps)
    coef = nnls_relative(x, t, weight=np.sqrt(share))
    fit = {"form": form, "features": list(TERMS[form])}
    if form == "hinge":
        fit["width_s"] = HINGE_WIDTH_S
        coef = fit_hinge(_columns(x), t, np.sqrt(share), hinge_start(coef))
    fit["coef_s"] = [float(c) for c in coef]
    # least squares of relative error shrinks predictions (it pays less to under-predict):
    # rescale so the steps' total is unbiased (a request's TPOT and E2E add steps up)
    scale = float((share * t).sum() / (share * predict_fit(fit, x)).sum())
    fit = scaled(fit, scale)
    err = np.abs(predict_fit(fit, x) - t) / t
    return {**fit, "domain": fit_domain(steps), "fit_steps": int(len(t)),
            "fit_new_shape_steps": int(x[:, -1].sum()),
            "total_scale": scale, "fit_mape": float(err.mean()),
            "fit_p90_abs_rel_error": float(np.percentile(err, 90))}


def fit_domain(steps: list[dict]) -> dict[str, float]:
    """The range a fit saw (``llmsim.latency.domain`` axes): the largest step of each kind."""
    return {"query_tokens": float(max(s["query_tokens"] for s in steps)),
            "kv_tokens": float(max(s["kv_tokens"] for s in steps)),
            "rows": float(max(s["num_requests"] for s in steps)),
            # a step that did not log its longest row: its KV total bounds it
            "context_per_row": float(max(s.get("max_kv_tokens", s["kv_tokens"]) for s in steps))}


def _columns(x: np.ndarray) -> dict[str, np.ndarray]:
    return dict(zip(("n", "q", "k", "p", "b"), x[:, 1:].T))


def predict_fit(fit: dict, x: np.ndarray) -> np.ndarray:
    """A fit's seconds for the rows of a ``features`` matrix; rows past the fit's own range go
    to its ``beyond`` part where it has one."""
    c = _columns(x)
    if fit.get("graph_padded"):  # a graph-mode fit prices the shape the graph runs (padded)
        c["q"], c["k"], pairs = padded(c["q"].astype(np.int64), c["k"].astype(np.int64))
        c["p"] = pairs / 1e6
    t = predict(form_of(fit), coef_of(fit), width_of(fit), c["n"], c["q"], c["k"], c["p"],
                c["b"])
    if "beyond" in fit:  # past the main part's own range, not the union's
        out = past(fit.get("fitted_domain", fit["domain"]), c["n"], c["q"], c["k"])
        t = np.where(out, predict_fit(fit["beyond"], x), t)
    return t


def past(domain: dict, n, q, k):
    """Whether steps of ``n`` rows, ``q`` query and ``k`` KV tokens lie past ``domain``."""
    return (np.asarray(q) > domain["query_tokens"]) | (np.asarray(k) > domain["kv_tokens"]) | \
        (np.asarray(n) > domain["rows"])


def with_beyond(fit: dict, steps: list[dict], form: str, min_steps: int = 20,
                new_shape_s: float | None = None) -> dict:
    """``fit`` plus a ``beyond`` part fitted on the ``steps`` past its range (the engine-grid
    runs measure the engine there), when there are enough of them; the domain of the whole is
    then the union of both."""
    d = fit["domain"]
    far = [s for s in steps if past(d, s["num_requests"], s["query_tokens"], s["kv_tokens"])]
    if len(far) < min_steps:
        return fit
    beyond = fit_steps(far, form, new_shape_s)
    union = {a: max(d[a], beyond["domain"][a]) for a in d}
    return {**fit, "beyond": beyond, "domain": union, "fitted_domain": d}


def host_scale(fit: dict, steps: list[dict]) -> float:
    """How much slower (> 1) or faster this host ran ``steps`` than ``fit`` predicts, in total
    time: both engines' steps are mostly host-CPU work (eager launches, plan builds), so one
    engine's logged steps calibrate the other's cost on the same machine."""
    x, t = _design(steps)
    return float(t.sum() / predict_fit(fit, x).sum())
