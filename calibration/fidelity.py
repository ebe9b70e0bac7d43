"""Fidelity against a real engine: simulate each measured run (``calibration.cases``) and
compare latency distributions and per-request times.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from calibration.cases import (
    METRICS,
    QUANTILES,
    VALIDATION_ROOT,
    MeasuredCase,
    case_gpu,
    case_scenario,
    find_cases,
    load_case,
    measured_latencies,
    prebuilt_shapes,
)
from calibration.engine_fit import PARTS_OF  # what ``parts=True`` prices each variant by
from calibration.fidelity_fit import (
    graph_donors,
    logged_steps,
    session_runs,
    session_speed,
    static_runs,
    step_runs,
    write_fit,
)
from calibration.step_fit import host_scale
from llmsim.simulation import Results

__all__ = ["METRICS", "QUANTILES", "VALIDATION_ROOT", "MeasuredCase", "case_gpu", "case_scenario",
           "find_cases", "load_case", "measured_latencies", "prebuilt_shapes"]

FitOn = Literal["session", "all", "own"]


def simulate_case(case: MeasuredCase, leave_one_out: bool = True, fit_on: FitOn = "session",
                  fit_roots: tuple[Path, ...] = (), parts: bool = False) -> pd.DataFrame:
    """The simulated requests of ``simulate_case_results``."""
    return simulate_case_results(case, leave_one_out, fit_on, fit_roots, parts).requests


def simulate_case_results(case: MeasuredCase, leave_one_out: bool = True,
                          fit_on: FitOn = "session", fit_roots: tuple[Path, ...] = (),
                          parts: bool = False) -> Results:
    """Simulate a measured case. The engine's step cost is fitted on every other run of the same
    (GPU, model) under the case's root and ``fit_roots`` (a held-out set is scored with the
    committed runs too; ``leave_one_out``: never on the case itself), so the reported error is
    that of a prediction, not of a fit; with no other run, the committed profile. With
    ``fit_on="session"`` the cost is then scaled by how fast the case's session's other
    continuous-batching runs ran against it (``fidelity_fit.session_speed``): one number per
    session, not a refit on its two or three runs, which would bend the cost's shape to their
    own step mix. A static case's ``hf_generate`` cost is levelled to the static runs of other
    sessions. ``fit_on="own"`` is a diagnostic, not a prediction: a continuous-batching case is
    priced at the speed its own logged steps ran against the fit (one number the trace cannot
    know before the run), which splits the error into the host's speed and the rest (the
    scheduler, the cost's shape, speed changing within the run); static cases keep their
    session's speed. ``parts``: an eager continuous-batching case is priced by the step model
    assembled from the engine's measured parts (``hf_cb_parts``), at its host speed."""
    import tempfile

    from llmsim.simulation import simulate

    sc = case_scenario(case)
    roots, key, me = (case.path.parents[1], *fit_roots), (case.gpu, sc.model), case.path.resolve()
    # a continuous-batching case is priced by its own engine variant's runs (eager or CUDA
    # graphs); static cases level against the eager runs' session speed
    engine = case.engine if case.kind == "cb" else "hf_cb"
    runs = [r for r in step_runs(roots, engine).get(key, []) if r.resolve() != me]
    # static runs of other sessions only: the case's session's speed enters once (below), and
    # a sibling of another configuration would carry its own model error into the level
    static = static_runs(roots).get(key, [])
    mine = {r.resolve() for r in session_runs(case.path, static)} | {me}
    static = [r for r in static if r.resolve() not in mine]
    # what prices the case: its own engine variant, or the eager one's parts model
    priced = PARTS_OF.get(engine, engine) if parts and case.kind == "cb" else case.engine
    if not leave_one_out or not (runs or static):
        res = simulate(sc.model_copy(update={"latency": sc.latency.model_copy(
            update={"engine": priced})}))
        res.summary["session_speed"] = {"host_scale": 1.0, "session_runs": 0}
        return res
    with tempfile.TemporaryDirectory() as tmp:
        path = write_fit(Path(tmp), case.gpu, sc.model, [] if engine != "hf_cb" else runs,
                         generate=case.kind != "cb", static=static,
                         graph=runs if engine == "hf_cb_graph" else [],
                         donor_graph=graph_donors(step_runs(roots, "hf_cb_graph"), *key)
                         if engine == "hf_cb_graph" else None)
        # the runs that set the speed: with none of its variant in its session, none (1.0)
        siblings = session_runs(case.path, runs) if fit_on != "all" else []
        speed = _speed(case, fit_on, siblings, path, priced if case.kind == "cb" else engine)
        latency = sc.latency.model_copy(update={"fits_dir": tmp, "host_scale": speed,
                                                "engine": priced})
        res = simulate(sc.model_copy(update={"latency": latency}))
    res.summary["session_speed"] = {"host_scale": speed, "session_runs": len(siblings)}
    return res


def _speed(case: MeasuredCase, fit_on: FitOn, siblings: list[Path], fit_path: Path,
           engine: str) -> float:
    """The host speed ``simulate_case`` prices a case at (see there), against ``engine``'s fit;
    ``siblings``: the other runs of its engine variant in its session."""
    if fit_on == "own" and case.kind == "cb":
        fits = json.loads(fit_path.read_text())
        return host_scale(fits[engine], logged_steps([case.path])) if engine in fits else 1.0
    return session_speed(siblings, fit_path, engine) if fit_on != "all" else 1.0


def compare(measured: pd.DataFrame, simulated: pd.DataFrame) -> dict:
    """Relative error (simulated / measured - 1) of p50/p90/p99 of each metric, and the
    distribution of per-request absolute relative errors (matched by position)."""
    out: dict = {"quantiles": {}, "per_request": {}}
    for m in METRICS:
        a, b = measured[m].dropna().to_numpy(), simulated[m].dropna().to_numpy()
        for q in QUANTILES:
            mq, sq = float(np.percentile(a, q)), float(np.percentile(b, q))
            out["quantiles"][f"{m[:-2]}_p{q}"] = {"measured": mq, "simulated": sq,
                                                  "rel_error": sq / mq - 1.0}
        both = pd.concat([measured[m].reset_index(drop=True), simulated[m].reset_index(drop=True)],
                         axis=1, keys=["a", "b"]).dropna()
        err = (both["b"] / both["a"] - 1.0).abs()
        out["per_request"][m[:-2]] = {"p50_abs_rel_error": float(err.median()),
                                      "p90_abs_rel_error": float(err.quantile(0.9))}
    headline = [abs(v["rel_error"]) for k, v in out["quantiles"].items()
                if k.endswith(("_p50", "_p90"))]
    out["median_abs_error_p50_p90"] = float(np.median(headline))
    out["worst_abs_error_p50_p90"] = float(np.max(headline))
    out["mean_e2e_s"] = {"measured": float(measured["e2e_s"].mean()),
                         "simulated": float(simulated["e2e_s"].mean())}
    return out


def _row(gpu: str, name: str, r: dict) -> dict:
    row = {"gpu": gpu, "case": name, "median_abs_err": r["median_abs_error_p50_p90"],
           "worst_abs_err": r["worst_abs_error_p50_p90"],
           "mean_e2e_measured_s": r["mean_e2e_s"]["measured"],
           "mean_e2e_simulated_s": r["mean_e2e_s"]["simulated"]}
    row.update({k: v["rel_error"] for k, v in r["quantiles"].items()})
    row.update({f"{k}_measured_s": v["measured"] for k, v in r["quantiles"].items()})
    return row


def validate(root: Path = VALIDATION_ROOT, fit_on: FitOn = "session",
             fit_roots: tuple[Path, ...] = (),
             progress: Callable[[int, int], None] | None = None,
             parts: bool = False) -> pd.DataFrame:
    """Every case under ``root``: simulate, compare; one row per case. ``fit_roots``, ``parts``:
    see ``simulate_case`` (``llmsim-lab validate --root`` passes the committed validation root);
    ``progress(done, total)`` after each case."""
    rows = []
    cases = find_cases(root)
    if parts:  # only what the parts model prices: eager continuous batching where parts ran
        cases = [p for p in cases if _parts_priced(load_case(p))]
    for i, p in enumerate(cases):
        case = load_case(p)
        res = simulate_case_results(case, fit_on=fit_on, fit_roots=fit_roots, parts=parts)
        sim = res.requests
        row = _row(case.gpu, case.name, compare(case.requests, sim))
        # the share of simulated busy time priced outside the measured range of the fit
        row["outside_share"] = res.summary["cost_model_domain"].get("outside_share", 0.0)
        row["host_scale"] = res.summary["session_speed"]["host_scale"]
        row["session_runs"] = res.summary["session_speed"]["session_runs"]
        errs = batch_errors(case, sim)
        row["batch_errors"] = None if errs is None else [round(float(e), 4) for e in errs]
        row["batch_measured_s"] = None if errs is None else batch_durations(case).tolist()
        rows.append(row)
        if progress is not None:
            progress(i + 1, len(cases))
    return pd.DataFrame(rows)


def _parts_priced(case: MeasuredCase) -> bool:
    """Whether ``validate(parts=True)`` prices ``case``: continuous batching, eager or in graph
    mode, on a (GPU, model) whose committed fit has that engine's parts model."""
    return case.kind == "cb" and case.engine in PARTS_OF and _has_parts(
        case.gpu, case.info["case"]["model"], PARTS_OF[case.engine])


@cache
def _has_parts(gpu: str, model: str, engine: str) -> bool:  # once per (GPU, model, engine)
    from calibration.engine_fit import FIT_FILE, fits_root

    path = fits_root() / gpu / model / FIT_FILE
    return path.exists() and engine in json.loads(path.read_text())


def batch_durations(case: MeasuredCase) -> np.ndarray | None:
    """A static case's measured batch durations in the order they ran (None: not static)."""
    path = case.path / "batches.csv"
    if case.kind != "static" or not path.exists():
        return None
    b = pd.read_csv(path)
    return (b["end_s"] - b["start_s"]).to_numpy(float)


def batch_errors(case: MeasuredCase, simulated: pd.DataFrame) -> np.ndarray | None:
    """A static case's per-batch duration error (simulated / measured - 1), batch by batch in
    the order they ran: a simulated batch is the requests that started together, its duration
    until the last of them finished. None for a continuous-batching case, or when the batches
    do not pair up."""
    measured = batch_durations(case)
    if measured is None:
        return None
    g = simulated.groupby("first_scheduled_s")["finish_s"].max().sort_index()
    sim = (g.to_numpy(float) - g.index.to_numpy(float))
    if len(sim) != len(measured):
        return None
    return np.asarray(sim / measured - 1.0)


def plot_cdfs(measured: pd.DataFrame, simulated: pd.DataFrame, out: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, m in zip(axes, METRICS):
        for df, label in ((measured, "measured"), (simulated, "llmsim")):
            x = np.sort(df[m].dropna().to_numpy())
            ax.step(x, np.arange(1, len(x) + 1) / max(len(x), 1), where="post", label=label)
        ax.set_xlabel(m.replace("_s", " (s)"))
        ax.set_ylabel("CDF")
    axes[0].legend()
    fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
