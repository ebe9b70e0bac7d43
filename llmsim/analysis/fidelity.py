"""Fidelity against a real engine (issue #4): rebuild each measured run as a scenario, simulate
it, and compare latency distributions and per-request times.

A measured case is a folder written by ``calibration/replay.py``: ``requests.csv`` (the
llmsim trace format plus measured ``first_token_s``/``last_token_s``), ``case.json`` (the
engine's knobs and resolved config) and its GPU as the parent folder's name.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from llmsim.errors import InputError
from llmsim.latency.engine_fit import generate_step_shapes, packed_shape
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
    return MeasuredCase(path.name, path.parent.name, path, json.loads((path / "case.json").read_text()),
                        measured_latencies(df))


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


def simulate_case(case: MeasuredCase, leave_one_out: bool = True,
                  fit_on: Literal["session", "all"] = "session") -> pd.DataFrame:
    """Simulate a measured case. The engine's step cost is fitted on every other run of the same
    (GPU, model) under the case's root that logged its steps (``leave_one_out``: never on the
    case itself), so the reported error is that of a prediction, not of a fit; a case with no
    such run uses the committed profile. With ``fit_on="session"`` that cost is then scaled by
    how fast the host of the case's session ran: the other runs of its session (same machine,
    same sitting; ``case.json`` ``session``) against it (``latency.host_scale``). One number per
    session, not a refit on its two or three runs: those would bend the cost's shape to their
    own step mix. A static case keeps the committed ``hf_generate`` fit, scaled likewise (its
    session's runs, else all of them, against the committed ``hf_cb`` fit)."""
    import tempfile

    from llmsim.simulation import simulate

    sc = case_scenario(case)
    runs = _step_runs(case.path.parents[1]).get((case.gpu, sc.model), [])
    others = [r for r in runs if r.resolve() != case.path.resolve()]
    own = _session(case.path)
    mine = [r for r in others if own is not None and _session(r) == own]
    speed_runs = mine if fit_on == "session" and mine else []

    def with_scale(s: float) -> Scenario:
        return sc.model_copy(update={"latency": sc.latency.model_copy(update={"host_scale": s})})

    if case.kind != "cb":
        if speed_runs or others:  # static: the host's speed from its logged runs
            sc = with_scale(_host_scale(case.gpu, sc.model, speed_runs or others))
        return simulate(sc).requests
    if not (leave_one_out and others):
        return simulate(sc).requests
    with tempfile.TemporaryDirectory() as tmp:
        path = _write_fit(Path(tmp), case.gpu, sc.model, others, generate=False)
        if speed_runs:
            sc = with_scale(_host_scale(case.gpu, sc.model, speed_runs, path))
        latency = sc.latency.model_copy(update={"profiles_dir": tmp})
        return simulate(sc.model_copy(update={"latency": latency})).requests


def _session(run: Path) -> str | None:
    """The replay session a run belongs to (``case.json`` ``session``; None if unrecorded)."""
    return json.loads((run / "case.json").read_text()).get("session")


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


def validate(root: Path = VALIDATION_ROOT, fit_on: Literal["session", "all"] = "session"
             ) -> pd.DataFrame:
    """Every committed case: simulate, compare; one row per case."""
    rows = []
    for p in find_cases(root):
        case = load_case(p)
        sim = simulate_case(case, fit_on=fit_on)
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


def fit_engine_profiles(root: Path = VALIDATION_ROOT, profiles: Path | None = None) -> list[Path]:
    """Fit ``engine_step_fit.json`` per (GPU, model): ``hf_cb`` from the step logs of every
    committed continuous-batching run (``calib_*`` and validation runs alike: more runs average
    out the engine's run-to-run drift; ``llmsim validate`` refits without the case it predicts),
    ``hf_generate`` from the ``generate_steps.csv`` microbenchmark (never a validation run)."""
    from llmsim.latency.profiled import profiles_root

    src = profiles_root()
    runs = _step_runs(root)
    pairs = set(runs) | {(p.parents[1].name, p.parent.name)
                         for p in src.glob("*/*/generate_steps.csv")}
    return [_write_fit(profiles or src, gpu, model, runs.get((gpu, model), []))
            for gpu, model in sorted(pairs)]


def _step_runs(root: Path) -> dict[tuple[str, str], list[Path]]:
    """Runs that logged engine steps, by (GPU, model)."""
    groups: dict[tuple[str, str], list[Path]] = {}
    for p in find_cases(root, include_calibration=True):
        if (p / "steps.csv").exists():
            model = json.loads((p / "case.json").read_text())["case"]["model"]
            groups.setdefault((p.parent.name, model), []).append(p)
    return groups


def _logged_steps(runs: list[Path]) -> list[dict]:
    """Every logged step of ``runs`` (each log parsed once per file version: ``validate``
    refits for every case from the same runs)."""
    return [s for p in runs
            for s in _parse_log(p / "steps.csv", (p / "steps.csv").stat().st_mtime_ns)]


@functools.lru_cache(maxsize=512)
def _parse_log(path: Path, mtime_ns: int) -> tuple[dict, ...]:
    from llmsim.latency.engine_fit import steps_from_log

    # tagged with their run: a fit weighs runs, not steps, the same
    return tuple({**s, "run": str(path.parent)} for s in steps_from_log(path))


def _host_scale(gpu: str, model: str, runs: list[Path], path: Path | None = None) -> float:
    """How fast ``runs``' host ran against the ``hf_cb`` fit at ``path`` (default: committed)."""
    from llmsim.latency.engine_fit import FIT_FILE, host_scale
    from llmsim.latency.profiled import profiles_root

    path = path or profiles_root() / gpu / model / FIT_FILE
    fits = json.loads(path.read_text()) if path.exists() else {}
    if "hf_cb" not in fits:
        return 1.0
    return host_scale(fits["hf_cb"], _logged_steps(runs))


def _write_fit(profiles: Path, gpu: str, model: str, runs: list[Path],
               generate: bool = True) -> Path:
    """``engine_step_fit.json``: ``hf_cb`` from ``runs``; ``hf_generate`` from the
    microbenchmark unless ``generate`` is off (a leave-one-out refit for a continuous-batching
    case needs only ``hf_cb``)."""
    from llmsim.latency.engine_fit import FIT_FILE, fit_steps, steps_from_generate
    from llmsim.latency.profiled import profiles_root

    fits = {}
    if runs:
        fits["hf_cb"] = fit_steps(_logged_steps(runs))
        fits["hf_cb"]["source_runs"] = [f"{p.parent.name}/{p.name}" for p in runs]
    gen = profiles_root() / gpu / model / "generate_steps.csv"
    if generate and gen.exists():
        fits["hf_generate"] = fit_steps(steps_from_generate(gen))
        fits["hf_generate"]["source"] = f"{gpu}/{model}/generate_steps.csv"
    out = profiles / gpu / model / FIT_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(fits, indent=2) + "\n")
    return out


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
