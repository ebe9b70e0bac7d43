"""Two shapes of a real engine step's cost over its features, and how each is fitted.

Every form prices a step from (requests n, query tokens q, KV tokens read k, attention pairs
p in millions, new attention shape b):

- ``linear``: ``c0 + c_n n + c_q q + c_k k + c_p p + c_b b``. The first form fitted.
- ``hinge``: ``c0 + c_n n + c_k k + c_b b + smoothmax(H, g_q q + g_p p)``. The engine runs
  eager: its host thread prepares the batch (per request, and per KV token: the index lists
  of a paged read), builds the attention plan of a new shape, then launches the forward's
  kernels while the GPU runs them. The forward costs the longer of the launches (``H``, about
  constant) and the GPU's work (matmuls ~ q, the masked attention ~ q x k), so query tokens
  are nearly free until the GPU becomes the bottleneck. Measured: at ~23k KV tokens in the
  batch, steps of ~150 and of 512 query tokens cost about the same and 1,024 tokens ~30% more
  (H200, Qwen2.5-7B, fast host state); a linear fit over-priced the code-like workload's
  512-token steps by ~6% and under-priced its 1,024-token ones by ~5%, on both schedulers.

``smoothmax(a, b) = a + w log(1 + exp((b - a) / w))`` with ``w`` = ``HINGE_WIDTH_S``: the two
sides overlap imperfectly near the corner. Scaling every coefficient and ``w`` by s scales
every step by s (``scaled``), which the host-speed and static-level corrections rely on.
"""
from __future__ import annotations

import numpy as np

LINEAR_TERMS = ("constant", "requests", "query_tokens", "kv_tokens", "attention_pairs_per_1e6",
                "new_shape")
HINGE_TERMS = ("constant", "requests", "kv_tokens", "new_shape", "host_forward",
               "gpu_query_tokens", "gpu_attention_pairs_per_1e6")
# ``parts``: the hinge's shape with a GPU side of its own constant and KV term, never fitted on
# step logs: assembled from the engine's measured parts (``calibration/step_parts.py``)
PARTS_TERMS = HINGE_TERMS + ("gpu_constant", "gpu_kv_tokens")
TERMS = {"linear": LINEAR_TERMS, "hinge": HINGE_TERMS, "parts": PARTS_TERMS}
NEW_SHAPE_INDEX = {"linear": 5, "hinge": 3, "parts": 3}
HINGE_WIDTH_S = 0.004


def coef_of(fit: dict) -> np.ndarray:
    """A fit's coefficients over its form's terms (a fit written before a term existed: 0)."""
    n = len(TERMS[form_of(fit)])
    c = list(fit["coef_s"])[:n]
    return np.asarray(c + [0.0] * (n - len(c)), dtype=float)


def form_of(fit: dict) -> str:
    return fit.get("form", "linear")


def width_of(fit: dict) -> float:
    return float(fit.get("width_s", HINGE_WIDTH_S))


def scaled(fit: dict, factor: float) -> dict:
    """``fit`` with every step ``factor`` times as long (its ``beyond`` part too)."""
    out = {**fit, "coef_s": [c * factor for c in fit["coef_s"]]}
    if form_of(fit) in ("hinge", "parts"):
        out["width_s"] = width_of(fit) * factor
    if "beyond" in fit:
        out["beyond"] = scaled(fit["beyond"], factor)
    return out


def _softplus(a, b, width_s):
    """``smoothmax(a, b) - a``."""
    return width_s * np.logaddexp(0.0, (b - a) / width_s)


def _gate(a, b, width_s):
    """d smoothmax / d b: the share of a step's forward the GPU's side sets."""
    return 0.5 * (1.0 + np.tanh(0.5 * (b - a) / width_s))


def predict(form: str, coef: np.ndarray, width_s: float, n, q, k, pairs_1e6, new):
    """Seconds of steps with the given features (arrays or scalars) under one form."""
    if form == "linear":
        return (coef[0] + coef[1] * n + coef[2] * q + coef[3] * k + coef[4] * pairs_1e6
                + coef[5] * new)
    if form == "parts":
        c0, cn, ck, cb, host, gq, gp, g0, gk = coef
        gpu = g0 + gq * q + gp * pairs_1e6 + gk * k
    else:
        c0, cn, ck, cb, host, gq, gp = coef
        gpu = gq * q + gp * pairs_1e6
    return c0 + cn * n + ck * k + cb * new + host + _softplus(host, gpu, width_s)


def nnls_relative(x: np.ndarray, t: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
    """Least squares of relative error with coefficients >= 0 (``scipy.optimize.nnls`` on the
    rows scaled by ``weight / t``); ``weight`` per step (the square root of each step's share
    of the loss)."""
    from scipy.optimize import nnls

    w = (1.0 if weight is None else weight) / t
    coef, _ = nnls(x * w[:, None], t * w)
    return np.asarray(coef, dtype=float)


def fit_hinge(cols: dict[str, np.ndarray], t: np.ndarray, weight: np.ndarray,
              start: np.ndarray, width_s: float = HINGE_WIDTH_S, iters: int = 100) -> np.ndarray:
    """Weighted least squares of relative error for the hinge form, coefficients >= 0:
    Levenberg-Marquardt with the exact Jacobian, each step projected onto >= 0. ``start``: a
    first guess (a linear fit's terms, see ``hinge_start``). Deterministic. Kept by hand, not
    ``scipy.optimize.least_squares``: the recorded fidelity bounds rest on where this one stops
    in the flat c0-vs-c_b valley; TRF converges elsewhere there and moved a held-out H200 p90
    TTFT error from 22.7% to 25.3% and one decision's magnitude."""
    n, q, k, p, b = (cols[c] for c in ("n", "q", "k", "p", "b"))
    w = weight / t

    def residual(c):
        return (predict("hinge", c, width_s, n, q, k, p, b) - t) * w

    def jacobian(c):
        gate = _gate(c[4], c[5] * q + c[6] * p, width_s)
        one = np.ones_like(t)
        return np.stack([one, n, k, b, 1.0 - gate, gate * q, gate * p], axis=1) * w[:, None]

    c = np.maximum(np.asarray(start, dtype=float), 0.0)
    r = residual(c)
    cost, damping = float(r @ r), 1e-3
    for _ in range(iters):
        j = jacobian(c)
        a, g = j.T @ j, j.T @ r
        step = np.linalg.solve(a + damping * np.diag(np.diag(a) + 1e-30), -g)
        trial = np.maximum(c + step, 0.0)
        r_trial = residual(trial)
        cost_trial = float(r_trial @ r_trial)
        if cost_trial < cost:
            done = cost - cost_trial < 1e-8 * cost  # the rest is a flat valley (c0 vs c_b)
            c, r, cost, damping = trial, r_trial, cost_trial, damping * 0.3
            if done:
                break
        else:
            damping *= 10.0
            if damping > 1e12:
                break
    return c


def hinge_start(linear: np.ndarray) -> np.ndarray:
    """A hinge fit's first guess from a linear one: the forward's launches take the linear
    constant, the GPU's query-token price twice the linear one (it shows only past the
    corner)."""
    c0, cn, cq, ck, cp, cb = linear
    return np.array([0.0, cn, ck, cb, c0, 2.0 * cq + 1e-6, cp])
