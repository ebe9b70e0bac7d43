"""The cheapest fleet that carries a rate within the SLO, over GPU types (capacity planning).

Each option (GPU, TP, PP) is measured once: the goodput of one instance of it (colocated:
the highest rate one instance holds at the attainment target; disaggregated: each phase alone
against its own SLO with the other generously provisioned, as DistServe's Algorithm 1 does).
Replicas add goodput (``n x goodput``: conservative, pooling n instances absorbs bursts better
than one). Colocated fleets may mix options (integer rounding is where a mix pays: 4.3
instances' worth is cheaper as 4 of one kind and 1 of a cheaper one); a disaggregated side runs
one option. The candidates, cheapest first, are then simulated whole at the rate with the
scenario's router until one holds the target: the answer is verified, not extrapolated.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from llmsim.analysis.goodput import (
    Probe,
    Shape,
    attainment,
    goodput_or_none,
    phase_alone,
    with_instances,
)
from llmsim.errors import InputError
from llmsim.models.specs import resolve_gpu
from llmsim.scenario import Scenario

MAX_COMBINATIONS = 1_000_000


@dataclass(frozen=True)
class Option:
    gpu: str
    tp: int
    pp: int
    usd_per_hour: float  # one instance (tp x pp GPUs)
    goodput_per_s: float  # one instance (colocated) or one instance of a phase

    @property
    def gpus(self) -> int:
        return self.tp * self.pp

    def label(self) -> str:
        return f"{self.gpu} TP{self.tp}" + (f" PP{self.pp}" if self.pp > 1 else "")


@dataclass(frozen=True)
class Fleet:
    groups: tuple[tuple[str, Option, int], ...]  # (role, option, instances)
    usd_per_hour: float
    attainment: float | None = None  # simulated at the rate (None: not verified)

    @property
    def num_gpus(self) -> int:
        return sum(o.gpus * n for _, o, n in self.groups)

    def describe(self) -> str:
        return " + ".join(f"{'' if role == 'colocated' else role[0].upper() + ' '}{n} x "
                          f"{o.label()}" for role, o, n in self.groups)


def _price(gpu: str, prices: dict[str, float]) -> float:
    if gpu in prices:
        return prices[gpu]
    spec = resolve_gpu(gpu)
    if spec.usd_per_hour is None:
        raise InputError(f"fleet search: no price for {gpu}; give one (--usd-per-hour {gpu}=...)")
    return spec.usd_per_hour


def _goodput_of(job: tuple) -> float | None:
    """``goodput_or_none`` of one job: a top-level function, it runs in a worker process."""
    return goodput_or_none(*job)


def measure_options(sc: Scenario, gpus: Sequence[str], tps: Sequence[int], pps: Sequence[int],
                    prices: dict[str, float], target: float, seeds: Sequence[int], tol: float,
                    window_s: float, on_probe: Probe | None = None,
                    workers: int = 1) -> dict[str, list[Option]]:
    """Every (GPU, TP, PP) that fits, per role, with the goodput of one instance of it
    (``workers`` > 1: measured in that many processes, with no per-probe progress)."""
    for gpu in gpus:
        try:
            resolve_gpu(gpu)
        except ValueError as e:
            raise InputError(f"fleet search: --gpu {gpu}: {e}") from None
    disagg = sc.cluster.topology == "disaggregated"
    roles = ("prefill", "decode") if disagg else ("colocated",)
    shapes = [(g, tp, pp) for g in gpus for tp in tps for pp in pps]
    # the generous side of a phase probe: the most GPUs per instance, then the most memory
    big = max(((tp, pp, g) for g, tp, pp in shapes),
              key=lambda s: (s[0] * s[1], resolve_gpu(s[2]).memory_gib))
    probes, jobs = [], []
    for gpu, tp, pp in shapes:
        price = _price(gpu, prices) * tp * pp
        for role in roles:
            variant, metric = (phase_alone(sc, role, tp, pp, gpu, big) if disagg
                               else (with_instances(sc, {role: [(1, tp, pp, gpu)]}), "both"))
            probes.append((role, Option(gpu, tp, pp, price, 0.0)))
            jobs.append((variant, metric, target, tuple(seeds), tol, window_s,
                         on_probe if workers <= 1 else None))
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            found = list(pool.map(_goodput_of, jobs))
    else:
        found = [_goodput_of(job) for job in jobs]
    out: dict[str, list[Option]] = {r: [] for r in roles}
    for (role, probe), g in zip(probes, found):
        if g:  # None: the shape cannot hold the model; 0: it never holds the SLO
            out[role].append(Option(probe.gpu, probe.tp, probe.pp, probe.usd_per_hour, g))
    for role, opts in out.items():
        if not opts:
            raise InputError(f"fleet search: no option holds the SLO on the {role} side at "
                             "any rate")
    return out


def candidates(options: dict[str, list[Option]], rate: float) -> list[Fleet]:
    """Every fleet whose summed goodput covers ``rate`` and has no instance to spare, cheapest
    first (ties: fewer GPUs, then fewer groups). A disaggregated side runs one option."""
    if "colocated" not in options:
        per_side = {role: [(o, math.ceil(rate / o.goodput_per_s)) for o in opts]
                    for role, opts in options.items()}
        fleets = [Fleet((("prefill", p, n_p), ("decode", d, n_d)),
                        p.usd_per_hour * n_p + d.usd_per_hour * n_d)
                  for (p, n_p), (d, n_d) in itertools.product(*per_side.values())]
    else:
        opts = options["colocated"]
        *head, last = opts
        ranges = [range(math.ceil(rate / o.goodput_per_s) + 1) for o in head]
        if math.prod(len(r) for r in ranges) > MAX_COMBINATIONS:
            raise InputError("fleet search: too many combinations; offer fewer GPU types or "
                             "TP/PP degrees, or a lower rate")
        fleets = []
        for counts in itertools.product(*ranges):
            covered = sum(n * o.goodput_per_s for n, o in zip(counts, head))
            n_last = max(0, math.ceil((rate - covered) / last.goodput_per_s - 1e-9))
            groups = [(o, n) for o, n in zip([*head, last], [*counts, n_last]) if n]
            if not groups:
                continue
            # no spare instance: dropping any one would leave the rate uncovered
            total = covered + n_last * last.goodput_per_s
            if any(total - o.goodput_per_s >= rate for o, _ in groups):
                continue
            fleets.append(Fleet(tuple(("colocated", o, n) for o, n in groups),
                                sum(o.usd_per_hour * n for o, n in groups)))
    return sorted(fleets, key=lambda f: (round(f.usd_per_hour, 9), f.num_gpus, len(f.groups)))


def fleet_scenario(sc: Scenario, fleet: Fleet) -> Scenario:
    """``sc`` running ``fleet``: colocated groups, or one option per side."""
    sides: dict[str, list[Shape]] = {}
    for role, o, n in fleet.groups:
        sides.setdefault(role, []).append((n, o.tp, o.pp, o.gpu))
    return with_instances(sc, sides)


def cheapest_fleet(sc: Scenario, rate: float, gpus: Sequence[str], tps: Sequence[int] = (1,),
                   pps: Sequence[int] = (1,), prices: dict[str, float] | None = None,
                   target: float = 0.9, seeds: Sequence[int] = (0,), tol: float = 0.05,
                   window_s: float = 60.0, max_verify: int = 4,
                   on_probe: Probe | None = None, workers: int = 1,
                   ) -> tuple[Fleet | None, list[Fleet], dict[str, list[Option]]]:
    """(the cheapest candidate verified to hold ``target`` at ``rate``, or None; the candidates
    simulated, with their attainment; every option measured)."""
    if rate <= 0:
        raise InputError("fleet search: --rate must be positive")
    if not gpus:
        raise InputError("fleet search: name at least one GPU type")
    options = measure_options(sc, gpus, tps, pps, prices or {}, target, seeds, tol, window_s,
                              on_probe, workers)
    tried = []
    for fleet in candidates(options, rate)[:max_verify]:
        got = attainment(fleet_scenario(sc, fleet), rate, seeds, "both", window_s, on_probe)
        fleet = Fleet(fleet.groups, fleet.usd_per_hour, got)
        tried.append(fleet)
        if got >= target:
            return fleet, tried, options
    return None, tried, options
