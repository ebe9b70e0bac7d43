"""Configuration decisions: of two configurations run in one session, which has the
lower mean E2E / p90 TTFT, and by how much. Whether llmsim reproduces the real ratio, and how
often the engine reproduces its *own* ratio when the same pair is run again in another session:
that is the most any fixed cost model can be held to, since the host's speed moves between
sessions (see the README's fidelity section). A decision whose real gap lies within the engine's
own repeat spread for that statistic (``repeat_spread``) says nothing the engine would say
again: it is reported, not scored.
"""
from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from llmsim.errors import InputError

PAIRS_FILE = "decision_pairs.yaml"
STATS: dict[str, Callable[[pd.DataFrame], float]] = {
    "mean_e2e": lambda d: float(d["e2e_s"].mean()),
    "p90_ttft": lambda d: float(d["ttft_s"].quantile(0.9)),
}
TIE = 0.05        # real ratios within 5% of 1 are a tie ...
TIE_SLACK = 0.25  # ... which a prediction reproduces by staying within 25% of 1
RATIO_LIMIT = 1.35  # otherwise: the same winner, and a ratio within 1.35x of the real one

Requests = Callable[[str], pd.DataFrame]


def reproduced(real: float, predicted: float) -> bool:
    """Does ``predicted`` (a ratio b / a) reproduce the decision ``real`` shows?"""
    if abs(real - 1.0) <= TIE:
        return abs(predicted - 1.0) < TIE_SLACK
    return (predicted > 1.0) == (real > 1.0) and abs(np.log(predicted / real)) < np.log(RATIO_LIMIT)


def load_pairs(path: Path) -> list[tuple[str, str]]:
    """``pairs: [[gpu/case_a, gpu/case_b], ...]`` from a YAML file; a clear error otherwise."""
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise InputError(f"{path}: cannot read decision pairs ({e})") from None
    pairs = doc.get("pairs") if isinstance(doc, dict) else None
    if not isinstance(pairs, list) or not pairs:
        raise InputError(f"{path}: expected 'pairs:' with a list of [case_a, case_b]")
    out = []
    for i, p in enumerate(pairs):
        if not (isinstance(p, list) and len(p) == 2 and all(isinstance(k, str) for k in p)):
            raise InputError(f"{path}: pairs[{i}] must be [gpu/case_a, gpu/case_b], got {p!r}")
        out.append((p[0], p[1]))
    return out


def configuration(key: str) -> str:
    """The configuration a run repeats: its key without the ``_rN`` session suffix."""
    return re.sub(r"_r\d+$", "", key)


def by_configuration(pairs: list[tuple[str, str]]) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """The pairs grouped by the configuration pair they run (one entry per session)."""
    out: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for a, b in pairs:
        out.setdefault((configuration(a), configuration(b)), []).append((a, b))
    return out


def repeated_pairs(pairs: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """The pairs whose configuration pair was run in more than one session."""
    return {p for runs in by_configuration(pairs).values() if len(runs) > 1 for p in runs}


def repeat_spread(pairs: list[tuple[str, str]], measured: Requests) -> dict:
    """The engine's own spread of each decision: for a configuration pair run in several
    sessions, the range of its sessions' log ratios, per statistic; for any other pair, the
    median of those ranges (``(None, stat)`` keys). Empty where nothing repeats."""
    out: dict = {}
    for stat, f in STATS.items():
        ranges = []
        for cfg, runs in by_configuration(pairs).items():
            if len(runs) < 2:
                continue
            logs = [np.log(f(measured(b)) / f(measured(a))) for a, b in runs]
            out[cfg, stat] = float(max(logs) - min(logs))
            ranges.append(out[cfg, stat])
        if ranges:
            out[None, stat] = float(np.median(ranges))
    return out


def decision_table(pairs: list[tuple[str, str]], measured: Requests,
                   simulated: Requests, spread: dict | None = None) -> pd.DataFrame:
    """One row per (pair, statistic): the real ratio b / a, llmsim's, whether it is
    reproduced, and (with ``spread``, from ``repeat_spread``) the engine's repeat spread of that
    decision and whether the real gap exceeds it (``scored``: only those are a decision the
    engine itself would make again)."""
    rows = []
    for a, b in pairs:
        cfg = (configuration(a), configuration(b))
        for stat, f in STATS.items():
            real = f(measured(b)) / f(measured(a))
            sim = f(simulated(b)) / f(simulated(a))
            row = {"a": a, "b": b, "stat": stat, "real": real, "simulated": sim,
                   "reproduced": reproduced(real, sim)}
            if spread is not None:
                width = spread.get((cfg, stat), spread.get((None, stat), 0.0))
                row.update(spread=width, scored=bool(abs(np.log(real)) > width))
            rows.append(row)
    return pd.DataFrame(rows)


def engine_agreement(pairs: list[tuple[str, str]], measured: Requests) -> pd.DataFrame:
    """The engine against itself: for each configuration pair run in two or more sessions, each
    session's real ratio taken as the prediction of each other's (ordered, since a tie is judged
    on the real side). One row per (session pair, statistic)."""
    rows = []
    for (ca, cb), runs in by_configuration(pairs).items():
        if len(runs) < 2:
            continue
        for stat, f in STATS.items():
            ratio = {p: f(measured(p[1])) / f(measured(p[0])) for p in runs}
            for truth, repeat in itertools.permutations(runs, 2):
                rows.append({"config_a": ca, "config_b": cb, "stat": stat, "truth": truth[1],
                             "repeat": repeat[1], "real": ratio[truth],
                             "repeat_ratio": ratio[repeat],
                             "reproduced": reproduced(ratio[truth], ratio[repeat])})
    return pd.DataFrame(rows, columns=["config_a", "config_b", "stat", "truth", "repeat", "real",
                                       "repeat_ratio", "reproduced"])


def gpu_decisions(keys: list[str], measured: Requests, simulated: Requests,
                  gpus: tuple[str, str] = ("h100", "h200")) -> pd.DataFrame:
    """Which GPU a configuration should run on: for every configuration run on both ``gpus``
    (``keys``: ``gpu/case``; runs of different sessions, so each side is the mean of its runs'
    statistic, the engine's run-to-run noise averaged), the real ratio b / a of each statistic
    and llmsim's. ``spread``: the larger of the two sides' ranges of that statistic over their
    runs (log; a side run once takes the median range of the sides run more than once);
    ``scored``: the real gap exceeds it."""
    a_gpu, b_gpu = gpus
    runs: dict[tuple[str, str], list[str]] = {}
    for k in keys:
        gpu, case = k.split("/", 1)
        if gpu in gpus:
            runs.setdefault((configuration(case), gpu), []).append(k)
    both = sorted(c for c, g in runs if g == a_gpu and (c, b_gpu) in runs)
    rows = []
    for stat, f in STATS.items():
        real = {side: np.array([f(measured(k)) for k in ks]) for side, ks in runs.items()
                if side[0] in both}
        ranges = [float(np.log(v.max() / v.min())) for v in real.values() if len(v) > 1]
        typical = float(np.median(ranges)) if ranges else 0.0
        for cfg in both:
            a, b = (cfg, a_gpu), (cfg, b_gpu)
            sim = {s: np.mean([f(simulated(k)) for k in runs[s]]) for s in (a, b)}
            r = float(real[b].mean() / real[a].mean())
            p = float(sim[b] / sim[a])
            width = max(float(np.log(v.max() / v.min())) if len(v) > 1 else typical
                        for v in (real[a], real[b]))
            rows.append({"config": cfg, "stat": stat, "runs_a": len(runs[a]),
                         "runs_b": len(runs[b]), "real": r, "simulated": p,
                         "reproduced": reproduced(r, p), "spread": width,
                         "scored": bool(abs(np.log(r)) > width)})
    return pd.DataFrame(rows, columns=["config", "stat", "runs_a", "runs_b", "real", "simulated",
                                       "reproduced", "spread", "scored"])
