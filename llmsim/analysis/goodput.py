"""Goodput (DistServe §10, policies.md §10/§12) and DistServe's placement search (§7.5, Alg. 1).

``max_rate`` bisects the arrival rate at which SLO attainment (seeds averaged) stays at or above
a target; per-GPU goodput is that rate over the scenario's GPU count. ``placement_search``
enumerates the TP degree of each phase, measures each phase's per-GPU goodput against its own
SLO (TTFT for prefill, TPOT for decode) with the other phase over-provisioned, keeps the best
per phase, and replicates each to carry a target rate: ``n = ceil(R / goodput)``.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from llmsim.errors import InputError
from llmsim.scenario import Scenario, scenario_from_dict
from llmsim.simulation import simulate

WINDOW_S = 60.0
# the summary's slo_attainment keys, and "each": TTFT and TPOT each held on their own
METRICS = ("both", "ttft", "tpot", "deadline", "each")


Probe = Callable[[float, float], None]  # told (rate, attainment) after every probe: progress


def at_rate(sc: Scenario, rate_per_s: float, window_s: float = WINDOW_S,
            seed: int | None = None) -> Scenario:
    """``sc`` offering ``rate_per_s`` for ``window_s``: the request count scales with the rate
    (at least 50), so every probe offers load for the same duration."""
    data = sc.model_dump(mode="json")
    if seed is not None:
        data["seed"] = seed
    data["workload"]["arrival"]["rate_per_s"] = rate_per_s
    data["workload"]["num_requests"] = max(50, math.ceil(rate_per_s * window_s))
    return scenario_from_dict(data, sc.name, sc.base_dir)


def attainment(sc: Scenario, rate_per_s: float, seeds: Sequence[int] = (0,),
               metric: str = "both", window_s: float = WINDOW_S,
               on_probe: Probe | None = None) -> float:
    """Mean SLO attainment over seeds at ``rate_per_s``. The request count scales with the rate
    (``at_rate``) so that every probe offers load for the same duration: a fixed count would let
    a short burst at any rate pass."""
    if sc.workload.kind != "synthetic" or sc.workload.arrival.kind == "closed":
        raise InputError("goodput: needs a synthetic workload with an open arrival process")
    runs = [simulate(at_rate(sc, rate_per_s, window_s, seed)).summary["slo_attainment"]
            for seed in seeds]
    # "each": TTFT and TPOT each held by the target on their own (DistServe's simulator), from
    # the same runs: the lower of the two mean attainments
    mean = (min(float(np.mean([a[m] for a in runs])) for m in ("ttft", "tpot")) if metric == "each"
            else float(np.mean([a[metric] for a in runs])))
    if on_probe is not None:
        on_probe(rate_per_s, mean)
    return mean


def max_rate(evaluate: Callable[[float], float], target: float = 0.9, hi: float = 64.0,
             tol: float = 0.05, max_hi: float = 4096.0) -> float:
    """Bisection for the highest rate with ``evaluate(rate) >= target`` (assumed monotone)."""
    if not 0 < target <= 1:
        raise InputError("goodput: target must be in (0, 1]")
    lo = 0.0
    while evaluate(hi) >= target:  # grow until the ceiling fails
        if hi >= max_hi:
            raise InputError(f"goodput: attainment still >= {target} at {hi:g} req/s; "
                             "the SLO never binds")
        lo, hi = hi, hi * 2
    return _boundary(lo, hi, lambda r: evaluate(r) >= target, tol)


def _boundary(good: float, bad: float, is_good: Callable[[float], bool], tol: float) -> float:
    """Bisect between a point that passes and one that fails (either order) to relative
    ``tol``; return the passing end."""
    while abs(bad - good) > tol * max(abs(good), abs(bad)) and abs(bad - good) > 1e-6:
        mid = (good + bad) / 2
        if is_good(mid):
            good = mid
        else:
            bad = mid
    return good


def goodput(sc: Scenario, target: float = 0.9, seeds: Sequence[int] = (0,), metric: str = "both",
            hi: float = 8.0, tol: float = 0.05, window_s: float = WINDOW_S,
            on_probe: Probe | None = None) -> dict:
    rate = max_rate(lambda r: attainment(sc, r, seeds, metric, window_s, on_probe), target, hi,
                    tol)
    return {"rate_per_s": rate, "per_gpu_rate_per_s": rate / sc.num_gpus, "num_gpus": sc.num_gpus,
            "target": target, "metric": metric, "seeds": list(seeds)}


@dataclass(frozen=True)
class Placement:
    tp_prefill: int
    tp_decode: int
    goodput_prefill_per_gpu: float
    goodput_decode_per_gpu: float
    num_prefill: int
    num_decode: int
    pp_prefill: int = 1
    pp_decode: int = 1

    @property
    def num_gpus(self) -> int:
        return (self.num_prefill * self.tp_prefill * self.pp_prefill
                + self.num_decode * self.tp_decode * self.pp_decode)


# one instance shape: (instances, TP, PP, GPU: a name or spec, None for the cluster's)
Shape = tuple[int, int, int, Any]


def with_instances(sc: Scenario, sides: dict[str, list[Shape]]) -> Scenario:
    """``sc`` with its instances replaced: ``colocated`` groups (any number), or one shape per
    disaggregated side (``prefill``, ``decode``)."""
    data = sc.model_dump(mode="json")
    c = data["cluster"]
    for role, shapes in sides.items():
        entries = [{"num_instances": n, "tp": tp, "pp": pp} | ({} if gpu is None else {"gpu": gpu})
                   for n, tp, pp, gpu in shapes]
        if role == "colocated":
            c["num_instances"], c["tp"], c["pp"], c["groups"] = 1, 1, 1, entries
        else:
            c[role] = entries[0]
    return scenario_from_dict(data, sc.name, sc.base_dir)


def phase_alone(sc: Scenario, role: str, tp: int, pp: int, gpu: Any,
                generous: tuple[int, int, Any]) -> tuple[Scenario, str]:
    """DistServe's measurement of one phase (policies.md 7.5): one instance of (TP, PP, GPU) on
    ``role``'s side, the other side generously provisioned (4 instances of ``generous``: TP,
    PP, GPU), and the SLO that phase answers for (prefill: TTFT, decode: TPOT)."""
    other = "decode" if role == "prefill" else "prefill"
    return (with_instances(sc, {role: [(1, tp, pp, gpu)], other: [(4, *generous)]}),
            "ttft" if role == "prefill" else "tpot")


def goodput_or_none(sc: Scenario, metric: str, target: float, seeds: Sequence[int], tol: float,
                    window_s: float, on_probe: Probe | None = None) -> float | None:
    """``goodput``'s rate, or None where the instance shape cannot hold the model (too little
    memory, or a TP that does not split its heads): not an option, not an error."""
    try:
        return float(goodput(sc, target, seeds, metric, tol=tol, window_s=window_s,
                             on_probe=on_probe)["rate_per_s"])
    except InputError as e:
        if any(k in str(e) for k in ("does not fit", "does not divide", "neither divides")):
            return None
        raise


def placement_search(sc: Scenario, target_rate_per_s: float, tps: Sequence[int] = (1, 2, 4),
                     target: float = 0.9, seeds: Sequence[int] = (0,), tol: float = 0.1,
                     window_s: float = WINDOW_S, pps: Sequence[int] = (1,),
                     max_gpus_per_instance: int = 8, on_probe: Probe | None = None) -> Placement:
    """DistServe's Algorithm 1 (policies.md 7.5): for each phase alone, every (TP, PP) with at
    most ``max_gpus_per_instance`` GPUs; bisect the rate at which the phase's SLO attainment
    holds (prefill: TTFT, decode: TPOT, the other side generously provisioned); keep the best
    goodput per GPU (ties: fewer GPUs); replicate it for ``target_rate_per_s``."""
    if sc.cluster.topology != "disaggregated":
        raise InputError("placement search: the scenario must be disaggregated")
    configs = sorted({(tp, pp) for tp in tps for pp in pps if tp * pp <= max_gpus_per_instance},
                     key=lambda c: (c[0] * c[1], c[1]))
    if not configs:
        raise InputError("placement search: no (tp, pp) within max_gpus_per_instance")
    big = max(configs, key=lambda c: c[0] * c[1])
    best_p = best_d = None
    for tp, pp in configs:
        gpus = tp * pp
        # each phase alone against its own SLO, the other side generous (4 x the largest group)
        rate_p = goodput_or_none(*phase_alone(sc, "prefill", tp, pp, None, (*big, None)),
                                 target, seeds, tol, window_s, on_probe)
        rate_d = None if rate_p is None else goodput_or_none(
            *phase_alone(sc, "decode", tp, pp, None, (*big, None)), target, seeds, tol,
            window_s, on_probe)
        if rate_p is None or rate_d is None:
            continue  # this shape cannot hold the model
        per_p, per_d = rate_p / gpus, rate_d / gpus
        if best_p is None or per_p > best_p[1] + 1e-12:  # ties: the first (fewest GPUs)
            best_p = ((tp, pp), per_p, rate_p)
        if best_d is None or per_d > best_d[1] + 1e-12:
            best_d = ((tp, pp), per_d, rate_d)
    if best_p is None or best_d is None or best_p[2] == 0 or best_d[2] == 0:
        raise InputError("placement search: no configuration meets the SLO at any rate")
    return Placement(best_p[0][0], best_d[0][0], best_p[1], best_d[1],
                     math.ceil(target_rate_per_s / best_p[2]),
                     math.ceil(target_rate_per_s / best_d[2]), best_p[0][1], best_d[0][1])


def _seed_attainment(sc: Scenario, rate: float, seed: int, metric: str, window_s: float,
                     on_probe: Probe | None = None) -> float:
    return attainment(sc, rate, (seed,), metric, window_s, on_probe)


def goodput_by_seed(sc: Scenario, seeds: Sequence[int], target: float = 0.9,
                    metric: str = "both", hi: float = 8.0, tol: float = 0.05,
                    window_s: float = WINDOW_S, on_probe: Probe | None = None) -> dict:
    """Goodput found separately for each seed: mean and a 95% Student-t interval across seeds."""
    rates = [max_rate(functools.partial(_seed_attainment, sc, seed=s, metric=metric,
                                        window_s=window_s, on_probe=on_probe), target, hi, tol)
             for s in seeds]
    mean = float(np.mean(rates))
    half = 0.0
    if len(rates) > 1:
        from scipy import stats

        sem = float(np.std(rates, ddof=1)) / math.sqrt(len(rates))
        half = float(stats.t.ppf(0.975, len(rates) - 1)) * sem
    return {"rate_per_s": mean, "ci95": (mean - half, mean + half), "per_seed": rates,
            "per_gpu_rate_per_s": mean / sc.num_gpus, "target": target, "metric": metric}


def min_slo_scale(sc: Scenario, rate_per_s: float, target: float = 0.9,
                  seeds: Sequence[int] = (0,), metric: str = "both", hi: float = 16.0,
                  tol: float = 0.02, window_s: float = WINDOW_S,
                  on_probe: Probe | None = None) -> float:
    """Smallest multiplier on every SLO threshold that keeps attainment >= target at a rate."""
    def at(scale: float) -> float:
        data = sc.model_dump(mode="json")
        data["slo"]["scale"] = scale
        return attainment(scenario_from_dict(data, sc.name, sc.base_dir), rate_per_s, seeds,
                          metric, window_s, on_probe)

    if at(hi) < target:
        raise InputError(f"min SLO scale: attainment < {target} even at scale {hi:g}")
    return _boundary(hi, 0.0, lambda scale: at(scale) >= target, tol)
