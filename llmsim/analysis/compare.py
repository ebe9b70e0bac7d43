"""Two configurations compared on the same workloads, with how sure the comparison is.

Uncertainty from two sources: the workload (each seed draws another workload; A and B run on
the same seeds, so the comparison is paired) and the cost model's own error (``--cost-model-
error``: each replicate scales every step of a run by a draw of the profiled model's measured
held-out error, per phase, the same draw for A and B where they price on the same GPU and
engine: a systematic bias moves both). Per metric: the mean over replicates with a bootstrap
band (scipy, BCa), the paired difference with its band, and P(A beats B): the share of
bootstrap resamples of the mean paired difference that favour A (ties count half).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from llmsim.analysis.sweep import _flatten
from llmsim.errors import InputError
from llmsim.latency.error import draw_factors, heldout_errors
from llmsim.scenario import Scenario, scenario_from_dict
from llmsim.simulation import simulate

DEFAULT_METRICS = ("slo_attainment.both", "goodput.requests_per_s", "ttft_s.p90", "tpot_s.p90",
                   "cost.usd_per_million_output_tokens", "energy.j_per_output_token")
_HIGHER = ("attainment", "goodput", "per_s", "per_usd", "per_kw", "hit_rate", "finished")


def higher_is_better(metric: str) -> bool:
    """Rates, attainment, goodput and hit rates up; latencies, $ and J per token down."""
    m = metric.lower()
    return any(k in m for k in _HIGHER) and "usd_per" not in m and "j_per" not in m


@dataclass(frozen=True)
class Comparison:
    metric: str
    higher_is_better: bool
    n: int
    a_mean: float
    a_band: tuple[float, float]
    b_mean: float
    b_band: tuple[float, float]
    diff_mean: float  # A - B
    diff_band: tuple[float, float]
    p_a_beats_b: float


def _band(x: np.ndarray, confidence: float, rng: np.random.Generator) -> tuple[float, float]:
    if len(x) < 2 or np.ptp(x) == 0:
        return float(x.mean()), float(x.mean())
    res = stats.bootstrap((x,), np.mean, confidence_level=confidence, method="BCa",
                          n_resamples=4999, random_state=rng)
    lo, hi = res.confidence_interval
    if not (math.isfinite(lo) and math.isfinite(hi)):  # BCa degenerate: fall back
        res = stats.bootstrap((x,), np.mean, confidence_level=confidence, method="percentile",
                              n_resamples=4999, random_state=rng)
        lo, hi = res.confidence_interval
    return float(lo), float(hi)


def mean_band(x: np.ndarray, confidence: float = 0.9, seed: int = 0) -> tuple[float, float]:
    """The bootstrap band of the mean of ``x`` (finite values)."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    if not len(x):
        return float("nan"), float("nan")
    return _band(x, confidence, np.random.default_rng(seed))


def compare_values(metric: str, a: Sequence[float], b: Sequence[float], confidence: float = 0.9,
                   seed: int = 0) -> Comparison:
    """A and B paired by replicate (same seed and cost-model draw)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    up = higher_is_better(metric)
    rng = np.random.default_rng(seed)
    d = x - y
    if not len(d):
        nan = (float("nan"), float("nan"))
        return Comparison(metric, up, 0, *(float("nan"), nan) * 3, float("nan"))
    if len(d) < 2 or np.ptp(d) == 0:
        dist = np.full(1, d.mean())
    else:
        dist = stats.bootstrap((d,), np.mean, method="percentile", n_resamples=4999,
                               random_state=rng).bootstrap_distribution
    favour = dist > 0 if up else dist < 0
    p = float(np.mean(favour) + 0.5 * np.mean(dist == 0))
    return Comparison(metric, up, len(d), float(x.mean()), _band(x, confidence, rng),
                      float(y.mean()), _band(y, confidence, rng), float(d.mean()),
                      _band(d, confidence, rng), p)


def _errors_key(sc: Scenario) -> tuple[str, str]:
    gpu = sc.cluster.gpu if isinstance(sc.cluster.gpu, str) else sc.cluster.gpu.name
    return gpu, str(getattr(sc.latency, "engine", ""))


def _check_errors(sc: Scenario, which: str) -> dict[str, np.ndarray]:
    if sc.latency.kind != "profiled":
        raise InputError(f"--cost-model-error: {which} prices steps with latency.kind "
                         f"{sc.latency.kind}, which has no measured held-out error; use "
                         "latency.kind: profiled")
    errs = heldout_errors(*_errors_key(sc))
    if errs is None:
        raise InputError(f"--cost-model-error: no held-out errors measured for {which}'s "
                         f"{'/'.join(_errors_key(sc))} (llmsim-lab residuals writes them)")
    return errs


def scaled_errors(errors: dict[str, np.ndarray], scale: float) -> dict[str, np.ndarray]:
    """The measured relative errors ``scale`` times as large (a stress test: how wrong would
    the cost model have to be for the verdict to change); a step never takes under a tenth of
    its price."""
    if scale <= 0:
        raise InputError(f"--error-scale: a positive factor, got {scale:g}")
    return {ph: np.maximum(e * scale, -0.9) for ph, e in errors.items()}


def run_pairs(a: Scenario, b: Scenario, seeds: Sequence[int], draws: int = 1,
              cost_model_error: bool = False,
              progress: Callable[[int, int], None] | None = None,
              error_scale: float = 1.0) -> list[tuple[dict, dict]]:
    """(A's flat summary, B's) per replicate: every seed, ``draws`` cost-model draws each
    (``error_scale``: the measured errors scaled, ``scaled_errors``)."""
    errors = {_errors_key(sc): scaled_errors(_check_errors(sc, w), error_scale)
              for sc, w in ((a, "A"), (b, "B"))} if cost_model_error else {}
    out, total = [], len(seeds) * draws
    for i, seed in enumerate(seeds):
        for k in range(draws):
            rng = np.random.default_rng([seed, k, 7])
            factors = {key: draw_factors(e, rng) for key, e in sorted(errors.items())}
            pair = []
            for sc in (a, b):
                data = sc.model_dump(mode="json")
                data["seed"] = seed
                run = simulate(scenario_from_dict(data, sc.name, sc.base_dir),
                               perturb=factors.get(_errors_key(sc)))
                pair.append(_flatten(run.summary))
            out.append((pair[0], pair[1]))
            if progress is not None:
                progress(i * draws + k + 1, total)
    return out


def compare_runs(pairs: list[tuple[dict, dict]], metrics: Sequence[str],
                 confidence: float = 0.9) -> list[Comparison]:
    rows = []
    for m in metrics:
        if not any(m in pa for pa, _ in pairs):
            continue  # a metric this run does not report (no price, no power model)
        rows.append(compare_values(m, [pa.get(m, float("nan")) for pa, _ in pairs],
                                   [pb.get(m, float("nan")) for _, pb in pairs], confidence))
    return rows
