"""Fidelity against a real engine (issue #4): rebuild each measured run as a scenario, simulate
it, and compare latency distributions and per-request times.

A measured case is a folder written by ``calibration/replay.py``: ``requests.csv`` (the
llmsim trace format plus measured ``first_token_s``/``last_token_s``), ``case.json`` (the
engine's knobs and resolved config) and its GPU as the parent folder's name.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from llmsim.analysis.fidelity_fit import (logged_steps, session_runs, session_speed, static_runs,
                                          step_runs, write_fit)
from llmsim.errors import InputError
from llmsim.latency.engine_fit import generate_step_shapes, host_scale, packed_shape
from llmsim.scenario import Scenario, scenario_from_dict

METRICS = ("ttft_s", "tpot_s", "e2e_s")
QUANTILES = (50, 90, 99)
VALIDATION_ROOT = Path(__file__).resolve().parents[2] / "calibration" / "validation"


@dataclass(frozen=True)
class MeasuredCase:
    name: str
    gpu: str
    path: Path
    info: dict
    requests: pd.DataFrame  # measured, with ttft_s / tpot_s / e2e_s

    @property
    def kind(self) -> str:
        return self.info["case"]["kind"]


def measured_latencies(df: pd.DataFrame) -> pd.DataFrame:
    """Per-request TTFT, TPOT and E2E from the replay's timestamps (same definitions as
    ``llmsim.metrics.recorder``: TPOT over the tokens after the first)."""
    out = df.copy()
    out["ttft_s"] = df["first_token_s"] - df["arrival_s"]
    out["e2e_s"] = df["last_token_s"] - df["arrival_s"]
    n = df["output_tokens"]
    out["tpot_s"] = np.where(n > 1, (df["last_token_s"] - df["first_token_s"]) / (n - 1).clip(1),
                             np.nan)
    return out


def load_case(path: Path) -> MeasuredCase:
    path = Path(path)
    if not (path / "requests.csv").exists() or not (path / "case.json").exists():
        raise InputError(f"{path}: not a measured case (needs requests.csv and case.json)")
    df = pd.read_csv(path / "requests.csv")
    bad = df["error"].notna() & (df["error"].astype(str) != "")
    if bad.any() or df["first_token_s"].isna().any():
        raise InputError(f"{path}: {int(bad.sum())} failed and "
                         f"{int(df['first_token_s'].isna().sum())} unfinished requests")
    return MeasuredCase(path.name, case_gpu(path), path, json.loads((path / "case.json").read_text()),
                        measured_latencies(df))


def case_gpu(path: Path) -> str:
    """The GPU a run was measured on: its parent folder's name, as the replay writes them
    (``<gpu>/<case>``); for a run filed elsewhere, the GPU ``provenance.json`` names (the
    replay's own rule: the first of h200, h100 in the device name)."""
    from llmsim.latency.profiled import profiles_root

    if (profiles_root() / path.parent.name).is_dir() or not (path / "provenance.json").exists():
        return path.parent.name
    name = str(json.loads((path / "provenance.json").read_text()).get("gpu_name", "")).lower()
    return next((g for g in ("h200", "h100") if g in name), path.parent.name)


def find_cases(root: Path = VALIDATION_ROOT, include_calibration: bool = False) -> list[Path]:
    """Validation cases under ``root/<gpu>/<case>``; ``calib_*`` runs fit the engine profile and
    are left out unless asked for."""
    return sorted(p for p in Path(root).glob("*/*") if (p / "case.json").exists()
                  and (include_calibration or not p.name.startswith("calib_")))


def case_scenario(case: MeasuredCase) -> Scenario:
    """The scenario that reproduces a measured run: same model, GPU, trace (measured arrival
    times), engine knobs and KV pool; the engine's step cost from ``engine_step_fit.json``."""
    c, res = case.info["case"], case.info.get("resolved", {})
    data = {
        "name": f"fidelity-{case.gpu}-{case.name}",
        "model": c["model"],
        "cluster": {"gpu": case.gpu, "num_instances": 1, "max_model_len": 32768},
        # requests.csv is in the llmsim trace format, in the order the engine received them
        "workload": {"kind": "trace", "path": str((case.path / "requests.csv").resolve())},
        "latency": {"kind": "engine_fit", "engine": "hf_cb" if case.kind == "cb" else "hf_generate",
                    "prebuilt_shapes": prebuilt_shapes(case)},
    }
    if case.kind == "cb":
        data["policy"] = {"kind": "hf_cb", "scheduler": c.get("scheduler", "fifo"),
                          "max_batch_tokens": int(res.get("max_batch_tokens", c["max_batch_tokens"])),
                          "safety_margin": res.get("safety_margin"),
                          "max_requests_per_batch": res.get("max_requests_per_batch")}
        data["kv_cache"] = {"block_size": int(res.get("block_size", res.get("page_size", 256))),
                            "num_blocks": int(res["num_blocks"]), "watermark": 0.0}
    else:  # static generate groups: all arrive at 0, FCFS over the harness's order
        # generate's cache grows with the group (no reservation up front): reserve what the
        # longest request needs, not the context window, or fewer rows fit than it ran
        need = int((case.requests["prompt_tokens"] + case.requests["output_tokens"]).max())
        data["policy"] = {"kind": "static", "max_batch_size": int(c["batch_size"]),
                          "reserve_tokens": need}
        data["kv_cache"] = {"watermark": 0.0}
    return scenario_from_dict(data, f"case {case.name}", case.path)


def prebuilt_shapes(case: MeasuredCase) -> list[tuple[int, int, int]]:
    """Attention shapes the case's engine process had built before it started: those of the
    cases the replay ran earlier in the same process (``case.json`` ``process.after``), from
    their measured groups (static) or logged steps (continuous batching). A replay that starts
    each case in a fresh process (the default) has none."""
    shapes: set[tuple[int, int, int]] = set()
    for name in (case.info.get("process") or {}).get("after", []):
        d = case.path.parent / name
        if (d / "batches.csv").exists():
            for b in pd.read_csv(d / "batches.csv").itertuples():
                shapes.update(generate_step_shapes(int(b.rows), int(b.padded_prompt_tokens),
                                                   int(b.new_tokens)))
        elif (d / "steps.csv").exists():
            st = pd.read_csv(d / "steps.csv")
            shapes.update(packed_shape(int(q), int(k))
                          for q, k in zip(st["query_tokens"], st["kv_tokens"]))
        else:
            raise InputError(f"{case.path}: ran after {name} in one process, but {d} holds no "
                             f"batches.csv or steps.csv to know which plans it built")
    return sorted(shapes)


FitOn = Literal["session", "all", "own"]


def simulate_case(case: MeasuredCase, leave_one_out: bool = True, fit_on: FitOn = "session",
                  fit_roots: tuple[Path, ...] = ()) -> pd.DataFrame:
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
    session's speed."""
    import tempfile

    from llmsim.simulation import simulate

    sc = case_scenario(case)
    roots, key, me = (case.path.parents[1], *fit_roots), (case.gpu, sc.model), case.path.resolve()
    runs = [r for r in step_runs(roots).get(key, []) if r.resolve() != me]
    # static runs of other sessions only: the case's session's speed enters once (below), and
    # a sibling of another configuration would carry its own model error into the level
    static = static_runs(roots).get(key, [])
    mine = {r.resolve() for r in session_runs(case.path, static)} | {me}
    static = [r for r in static if r.resolve() not in mine]
    if not leave_one_out or not (runs or static):
        return simulate(sc).requests
    with tempfile.TemporaryDirectory() as tmp:
        path = write_fit(Path(tmp), case.gpu, sc.model, runs, generate=case.kind != "cb",
                         static=static)
        speed = _speed(case, fit_on, runs, path)
        latency = sc.latency.model_copy(update={"profiles_dir": tmp, "host_scale": speed})
        return simulate(sc.model_copy(update={"latency": latency})).requests


def _speed(case: MeasuredCase, fit_on: FitOn, runs: list[Path], fit_path: Path) -> float:
    """The host speed ``simulate_case`` prices a case at (see there)."""
    if fit_on == "own" and case.kind == "cb":
        fits = json.loads(fit_path.read_text())
        return host_scale(fits["hf_cb"], logged_steps([case.path])) if "hf_cb" in fits else 1.0
    return session_speed(session_runs(case.path, runs), fit_path) if fit_on != "all" else 1.0


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
    return row


def validate(root: Path = VALIDATION_ROOT, fit_on: FitOn = "session",
             fit_roots: tuple[Path, ...] = ()) -> pd.DataFrame:
    """Every case under ``root``: simulate, compare; one row per case. ``fit_roots``: see
    ``simulate_case`` (``llmsim validate --root`` passes the committed validation root)."""
    rows = []
    for p in find_cases(root):
        case = load_case(p)
        sim = simulate_case(case, fit_on=fit_on, fit_roots=fit_roots)
        rows.append(_row(case.gpu, case.name, compare(case.requests, sim)))
    return pd.DataFrame(rows)


def repeatability(root: Path = VALIDATION_ROOT) -> pd.DataFrame:
    """The real engine against itself: a case run again later (``<case>_r<N>`` beside
    ``<case>``: the same plan entry, another session and machine) scored as if it were the
    prediction of the first run (``*_simulated_s`` columns hold the repeat's)."""
    import re

    rows = []
    for p in find_cases(root):
        m = re.fullmatch(r"(.+)_r\d+", p.name)
        if m and (p.parent / m.group(1) / "case.json").exists():
            first, again = load_case(p.parent / m.group(1)), load_case(p)
            rows.append(_row(p.parent.name, p.name, compare(first.requests, again.requests)))
    return pd.DataFrame(rows)


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
