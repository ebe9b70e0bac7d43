"""The host's two speeds in a real-engine run, read from the replay's step probe.

The continuous-batching engine is host-bound: nearly every step builds a cuDNN attention plan
for its new (query, KV) shape on the host (~41 ms on the H100 machines, ~38 ms on H200, of a
70-180 ms step; ``calibration/step_probe.py`` logs it as ``sdpa_first_s``). Measured over the
probed runs, those plan builds fall in two modes: a fast one and a slow one ~1.4-1.5x longer,
in streaks of a few to ~100 steps, and the rest of a slow step's host work is slower by about
the same factor. A run's share of slow steps (1%-97% so far) moves its speed by up to ~±15%
whatever its workload, which is the run-to-run spread llmsim cannot predict from a trace.

``run_regimes`` classifies one run's plan-building steps; ``regimes`` tabulates every probed
run under a root. Pure functions over ``steps.csv``: no torch.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from llmsim.errors import InputError

SLOW_OVER_FAST = 1.2  # a plan build this much above the run's fast level is a slow-state step
FAST_QUANTILE = 0.05  # a low quantile lands in the fast mode while >= 5% of steps are fast
SMALL_QUERY_TOKENS = 16  # steps this small are host-bound through and through
PROBE_COLUMNS = ("sdpa_first_s", "schedule_s", "end_s", "query_tokens", "num_requests")


def classify(plan_s: np.ndarray, reference_s: float | None = None) -> np.ndarray:
    """Which of a run's plan-build host times are slow-state ones. A step that reused a cached
    plan (its first SDPA call took a fraction of the run's typical build) is no build and is
    left out by the caller. ``reference_s``: the GPU's fast level from other runs, used where
    this run's own low quantile is already slow (a run with no fast steps at all)."""
    # a middle quantile would land in the slow mode of a run that spent most of its steps
    # there (82% seen): anchor on a low one, then take the median of the mode around it
    low_s = float(np.quantile(plan_s, FAST_QUANTILE))
    if reference_s is not None and low_s > SLOW_OVER_FAST * reference_s:
        return plan_s > SLOW_OVER_FAST * reference_s
    fast_s = float(np.median(plan_s[plan_s <= SLOW_OVER_FAST * 1.05 * low_s]))
    return plan_s > SLOW_OVER_FAST * fast_s


def run_regimes(run: Path, reference_s: float | None = None) -> dict:
    """One probed run: its plan-building steps, the share in the slow state (of steps and of
    step time), the two modes' plan-build medians and the slow / fast ratio of the rest of
    small steps (the other host work); ``reference_s`` as in ``classify``."""
    path = run / "steps.csv"
    if not path.exists():
        raise InputError(f"{run}: no steps.csv (not a continuous-batching replay run)")
    steps = pd.read_csv(path)
    missing = [c for c in PROBE_COLUMNS if c not in steps.columns]
    if missing:
        raise InputError(f"{path}: no step probe columns ({', '.join(missing)}); runs replayed "
                         f"before calibration/step_probe.py existed cannot be classified")
    steps = steps[steps["num_requests"] > 0]
    plan = steps["sdpa_first_s"].to_numpy(float)
    builds = plan > 0.25 * np.median(plan)  # a cached plan's call is ~0.1 ms against ~40 ms
    st = steps[builds]
    slow = classify(plan[builds], reference_s)
    dur = (st["end_s"] - st["schedule_s"]).to_numpy(float)
    rest = dur - plan[builds]
    small = st["query_tokens"].to_numpy() <= SMALL_QUERY_TOKENS

    def ratio(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.median(a) / np.median(b)) if len(a) and len(b) else float("nan")

    return {"plan_steps": int(builds.sum()), "slow_share": float(slow.mean()),
            "slow_time_share": float(dur[slow].sum() / dur.sum()),
            "fast_plan_ms": (1e3 * float(np.median(plan[builds][~slow]))
                             if not slow.all() else float("nan")),
            "slow_plan_median_ms": (1e3 * float(np.median(plan[builds][slow]))
                                    if slow.any() else float("nan")),
            "small_rest_slow_over_fast": ratio(rest[small & slow], rest[small & ~slow])}


def regimes(root: Path) -> pd.DataFrame:
    """Every probed run under ``root`` (``<gpu>/<case>/steps.csv`` at any depth), one row each;
    runs without the probe are skipped (their rows would say nothing). A run with no fast
    steps at all is classified against its GPU's median fast level over the other runs (a run can
    spend every step in the slow state)."""
    from calibration.fidelity_fit import run_variant

    found = {}
    for path in sorted(root.rglob("steps.csv")):
        # the plan build is the eager engine's; CUDA-graph runs replay captured steps instead
        if (path.parent / "case.json").exists() and run_variant(path.parent) != "hf_cb":
            continue
        try:
            found[path.parent] = run_regimes(path.parent)
        except InputError:
            continue
    if not found:
        raise InputError(f"{root}: no replay run with the step probe under it")
    gpu = {run: run.relative_to(root).parts[0] for run in found}
    reference = {g: float(np.median([r["fast_plan_ms"] for run, r in found.items()
                                     if gpu[run] == g])) / 1e3 for g in set(gpu.values())}
    rows = [{"run": str(run.relative_to(root)),
             **(run_regimes(run, reference[gpu[run]])
                if r["fast_plan_ms"] / 1e3 > SLOW_OVER_FAST * reference[gpu[run]] else r)}
            for run, r in found.items()]
    return pd.DataFrame(rows)
