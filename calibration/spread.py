"""The real engine against itself, and llmsim scored against that: a case run again in another
session (``<case>_r<N>``) taken as the prediction of the first run (``repeatability``; static
batches: ``batch_repeatability``), each case's error held to its configuration's repeat spread
(``against_spread``), and each configuration scored against the mean of its runs
(``per_configuration``; static batches: ``batches_per_configuration``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from calibration.cases import VALIDATION_ROOT, find_cases, load_case
from calibration.decisions import configuration
from calibration.fidelity import _row, compare


def repeatability(root: Path = VALIDATION_ROOT) -> pd.DataFrame:
    """The real engine against itself: a case run again later (``<case>_r<N>`` beside
    ``<case>``: the same plan entry, another session and machine) scored as if it were the
    prediction of the first run (``*_simulated_s`` columns hold the repeat's)."""
    rows = []
    for p in find_cases(root):
        first_name = configuration(p.name)
        if first_name != p.name and (p.parent / first_name / "case.json").exists():
            first, again = load_case(p.parent / first_name), load_case(p)
            rows.append(_row(p.parent.name, p.name, compare(first.requests, again.requests)))
    return pd.DataFrame(rows)


def batch_repeatability(root: Path = VALIDATION_ROOT) -> np.ndarray:
    """The real engine against itself on static batches: for every static case run again later
    (``<case>_r<N>``), each batch's |repeat duration / first run's - 1|, batch by batch."""
    out: list[float] = []
    for p in find_cases(root):
        first = p.parent / configuration(p.name)
        if first == p or not (p / "batches.csv").exists() or not (first / "batches.csv").exists():
            continue
        a, b = pd.read_csv(first / "batches.csv"), pd.read_csv(p / "batches.csv")
        if len(a) == len(b):
            out += list(np.abs((b["end_s"] - b["start_s"]).to_numpy(float)
                               / (a["end_s"] - a["start_s"]).to_numpy(float) - 1.0))
    return np.asarray(out)


SPREAD_MARGIN = 0.10  # the fidelity goal: every metric within the engine's own spread + 10 points


def against_spread(scored: pd.DataFrame, repeats: pd.DataFrame) -> pd.DataFrame:
    """``scored`` (``validate``'s rows) with, per case whose configuration ran more than once,
    the engine's own spread on each p50/p90 metric (the largest |repeat / first - 1| of that
    configuration, ``repeatability``) and whether llmsim's |error| stays within it plus
    ``SPREAD_MARGIN`` on every metric (``within_spread``; NaN where nothing was repeated)."""
    metrics = [f"{m}_p{q}" for m in ("ttft", "tpot", "e2e") for q in (50, 90)]
    out = scored.copy()
    if repeats.empty:
        out["spread_median"], out["within_spread"] = np.nan, np.nan
        return out
    rep = repeats.assign(config=[f"{g}/{configuration(c)}" for g, c in
                                 zip(repeats["gpu"], repeats["case"])])
    spread = rep.groupby("config")[metrics].agg(lambda v: float(np.max(np.abs(v))))
    keys = [f"{g}/{configuration(c)}" for g, c in zip(out["gpu"], out["case"])]
    have = [k in spread.index for k in keys]
    s = spread.reindex(keys).to_numpy(float)
    err = np.abs(out[metrics].to_numpy(float))
    out["spread_median"] = np.where(have, np.median(s, axis=1), np.nan)
    ok = (err <= s + SPREAD_MARGIN).all(axis=1)
    out["within_spread"] = np.where(have, ok.astype(float), np.nan)
    return out


def per_configuration(scored: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration that ran more than once: llmsim's error on each p50/p90 metric
    against the mean of its runs' measured values (the engine's expectation, its run-to-run
    noise averaged), the predictions (each run priced at its own session's speed) averaged
    likewise."""
    metrics = [f"{m}_p{q}" for m in ("ttft", "tpot", "e2e") for q in (50, 90)]
    keys = [f"{g}/{configuration(c)}" for g, c in zip(scored["gpu"], scored["case"])]
    rows = []
    for key, grp in scored.assign(config=keys).groupby("config", sort=True):
        if len(grp) < 2:
            continue
        row: dict = {"config": key, "runs": len(grp)}
        for m in metrics:
            measured = grp[f"{m}_measured_s"].to_numpy(float)
            row[m] = float((measured * (1.0 + grp[m].to_numpy(float))).mean() / measured.mean()
                           - 1.0)
        row["median_abs_err"] = float(np.median(np.abs([row[m] for m in metrics])))
        rows.append(row)
    return pd.DataFrame(rows, columns=["config", "runs", "median_abs_err", *metrics])


def batches_per_configuration(scored: pd.DataFrame) -> np.ndarray:
    """Static batches scored as ``per_configuration`` scores metrics: for each static
    configuration run more than once (every run the same number of batches), each batch's
    mean predicted duration over the runs against its mean measured duration, minus 1."""
    rows = scored[scored["batch_errors"].notna()] if "batch_errors" in scored else scored[:0]
    keys = [f"{g}/{configuration(c)}" for g, c in zip(rows["gpu"], rows["case"])]
    out: list[float] = []
    for _, grp in rows.assign(config=keys).groupby("config", sort=True):
        measured = [np.asarray(m, float) for m in grp["batch_measured_s"]]
        if len(grp) < 2 or len({len(m) for m in measured}) != 1:
            continue
        predicted = [m * (1.0 + np.asarray(e, float))
                     for m, e in zip(measured, grp["batch_errors"])]
        out += list(np.mean(predicted, axis=0) / np.mean(measured, axis=0) - 1.0)
    return np.asarray(out)
