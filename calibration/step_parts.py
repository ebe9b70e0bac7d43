"""The continuous-batching engine's step assembled from its measured parts, not fitted on whole
steps: each part is measured apart in the engine itself (``forward_probe`` runs over the
engine-step grid, ``calibration/engine_grid/plan_parts.yaml``) and fitted on its own features:

- host, per step: the scheduler (``schedule_s`` -> ``scheduled_s``), batch preparation
  (-> the forward's entry) and, after the forward, sampling's copy-out and the update
  (from when the GPU finished the forward to the step's end): ``c0 + c_n n + c_k k``;
- the attention plan build of a new shape: the first SDPA call's host time over the others'
  (``sdpa_first_s``), a median per new shape;
- the forward's kernel launches (``forward_host_s`` less the plan build): a constant ``H``;
- the forward's GPU time with no launch gaps (``gpu_forward_s``):
  ``g0 + g_q q + g_p pairs + g_k k`` over the steps where the GPU, not the launches, sets the
  forward's time.

The probe found every forward "unclean" (the engine waits on the GPU inside it); the runs of
``plan_trace.yaml`` take the forward apart by a profiler trace instead (``fit_trace_parts``:
the GPU's kernel time from traced steps, the host's time from the others).

The step is then ``host + plan + smoothmax(H, gpu)`` (``step_forms``'s ``parts`` form): the
forward takes the longer of its launches and its kernels. Replays of real runs stay the test:
``llmsim-lab parts`` reports the assembled model's step error on every committed replay next to
the model fitted on whole steps.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from calibration.step_forms import HINGE_WIDTH_S, PARTS_TERMS, nnls_relative, predict

PARTS_ROOT = Path(__file__).resolve().parent / "engine_grid" / "parts"  # <gpu>/<case>/steps.csv
GPU_SETS_FORWARD = 0.5  # a step's GPU side is fitted where it is over this share of the launches
HOST_MIN_S = 0.005  # a traced-parts host share below this is the GPU model's error, not host


def _f(r: dict, k: str) -> float:
    v = r.get(k, "")
    return float(v) if v not in ("", None) else float("nan")


def parts_from_log(path: Path) -> list[dict]:
    """The parts of every step of a ``forward_probe`` run's ``steps.csv`` (clean steps only: the
    host never waited on the GPU inside the forward)."""
    out = []
    with path.open() as f:
        for r in csv.DictReader(f):
            if "gpu_forward_s" not in r or not int(float(r.get("forward_clean") or 0)):
                continue
            n, q, k = int(r["num_requests"]), int(r["query_tokens"]), int(r["kv_tokens"])
            if n <= 0:
                continue
            enter, exit_, gpu = (_f(r, c) for c in ("forward_enter_s", "forward_exit_s",
                                                    "gpu_forward_s"))
            gpu_done = max(exit_, enter + _f(r, "forward_sleep_s") + gpu)
            calls = max(int(float(r["sdpa_calls"])), 2)
            first, all_sdpa = _f(r, "sdpa_first_s"), _f(r, "sdpa_host_s")
            plan = max(0.0, first - (all_sdpa - first) / (calls - 1))
            out.append(dict(num_requests=n, query_tokens=q, kv_tokens=k, attention_pairs=q * k,
                            max_kv_tokens=int(r["max_kv_tokens"]),
                            schedule_s=_f(r, "scheduled_s") - _f(r, "schedule_s"),
                            prepare_s=enter - _f(r, "scheduled_s"),
                            post_s=_f(r, "end_s") - gpu_done, plan_s=plan,
                            launch_s=_f(r, "forward_host_s") - plan, gpu_s=gpu))
    return out


def fit_parts(steps: list[dict], plan_min_s: float = 0.005) -> dict:
    """Each part's fit (see the module's docstring), assembled into a ``parts``-form fit."""
    if not steps:  # e.g. every probed forward unclean: the host waited on the GPU inside it
        raise ValueError("no clean forward-probe step to fit the engine's parts on")
    col = {k: np.array([s[k] for s in steps], dtype=float) for k in steps[0] if k != "run"}
    n, q, k, p = col["num_requests"], col["query_tokens"], col["kv_tokens"], \
        col["attention_pairs"] / 1e6
    one = np.ones_like(n)
    host_t = col["schedule_s"] + col["prepare_s"] + col["post_s"]
    host = nnls_relative(np.stack([one, n, k], axis=1), host_t)
    built = col["plan_s"] > plan_min_s
    plan = float(np.median(col["plan_s"][built])) if built.any() else 0.0
    launch = float(np.median(col["launch_s"]))
    gpu_side = col["gpu_s"] > GPU_SETS_FORWARD * launch
    if gpu_side.sum() < 4:
        raise ValueError(f"parts: {int(gpu_side.sum())} steps where the GPU sets the forward "
                         "(need 4): the runs measured no GPU-bound step")
    x_gpu = np.stack([one, q, p, k], axis=1)[gpu_side]
    g0, gq, gp, gk = nnls_relative(x_gpu, col["gpu_s"][gpu_side])
    coef = [host[0], host[1], host[2], plan, launch, gq, gp, g0, gk]
    fit = {"form": "parts", "features": list(PARTS_TERMS), "width_s": HINGE_WIDTH_S,
           "coef_s": [float(c) for c in coef]}
    gpu_err = np.abs(x_gpu @ np.array([g0, gq, gp, gk]) - col["gpu_s"][gpu_side]) / \
        col["gpu_s"][gpu_side]
    host_err = np.abs(np.stack([one, n, k], axis=1) @ host - host_t) / host_t
    fit["parts"] = {"steps": int(len(n)), "gpu_side_steps": int(gpu_side.sum()),
                    "plan_build_steps": int(built.sum()),
                    "launch_s_p10_p90": [float(np.percentile(col["launch_s"], 10)),
                                         float(np.percentile(col["launch_s"], 90))],
                    "host_mape": float(host_err.mean()), "gpu_mape": float(gpu_err.mean())}
    fit["domain"] = {"query_tokens": float(q.max()), "kv_tokens": float(k.max()),
                     "rows": float(n.max()),
                     "context_per_row": float(col["max_kv_tokens"].max())}
    return fit


def trace_parts_from_log(path: Path) -> list[dict]:
    """Every step of a ``parts: trace`` run (``forward_trace``): its shape, its wall time and,
    on traced steps, the GPU's kernel time inside the forward (``gpu_s``; NaN elsewhere). The
    profiler slows a traced step's host side, so only untraced steps give host time."""
    out = []
    with path.open() as f:
        for r in csv.DictReader(f):
            if "trace_forward_s" not in r or int(r["num_requests"]) <= 0:
                continue
            n, q, k = int(r["num_requests"]), int(r["query_tokens"]), int(r["kv_tokens"])
            out.append(dict(num_requests=n, query_tokens=q, kv_tokens=k, attention_pairs=q * k,
                            max_kv_tokens=int(r["max_kv_tokens"]),
                            step_s=_f(r, "end_s") - _f(r, "schedule_s"),
                            gpu_s=_f(r, "trace_gpu_busy_s")))
    return out


def load_trace_parts(root: Path = PARTS_ROOT, gpu: str = "h200",
                     model: str = "llama-3.1-8b") -> list[dict]:
    """The steps of every committed ``parts: trace`` run of one (GPU, model)."""
    return [{**s, "run": d.name} for d, c in committed_runs(gpu, model, root)
            if c.get("parts") == "trace" for s in trace_parts_from_log(d / "steps.csv")]


def fit_trace_parts(steps: list[dict]) -> dict:
    """The step from a profiler trace's parts: ``host + GPU``, as measured on H200 (the host
    does not overlap the kernels, so the ``parts`` form's forward-launch term is 0).

    - GPU: ``g0 + g_q q + g_p pairs + g_k k``, the kernel time of traced steps;
    - host (scheduling, batch preparation, launches, the attention plan every eager step builds,
      sampling, the update): ``c0 + c_n n + c_k k``, fitted on untraced decode steps' wall time
      less their kernel time as predicted from the traced decodes (the profiler slows a traced
      step's host side);
    - the traced steps are every ``trace_every``-th, which takes few prefills: the GPU part is
      refitted on the traced steps and the untraced prefill steps' wall time less the host."""
    traced = [s for s in steps if s["gpu_s"] == s["gpu_s"]]
    plain = [s for s in steps if s["gpu_s"] != s["gpu_s"]]
    decodes = [s for s in plain if s["query_tokens"] == s["num_requests"]]
    prefills = [s for s in plain if s["query_tokens"] > s["num_requests"]]
    if len(traced) < 4 or len(decodes) < 4:
        raise ValueError(f"parts: {len(traced)} traced and {len(decodes)} untraced decode steps "
                         "(need 4 of each)")

    def x_gpu(rows: list[dict]) -> np.ndarray:
        return np.array([[1.0, s["query_tokens"], s["attention_pairs"] / 1e6, s["kv_tokens"]]
                         for s in rows])

    def x_host(rows: list[dict]) -> np.ndarray:
        return np.array([[1.0, s["num_requests"], s["kv_tokens"]] for s in rows])

    def wall(rows: list[dict]) -> np.ndarray:
        return np.array([s["step_s"] for s in rows])

    gpu_t = np.array([s["gpu_s"] for s in traced])
    g = nnls_relative(x_gpu(traced), gpu_t)
    host_t = wall(decodes) - x_gpu(decodes) @ g
    kept = host_t > HOST_MIN_S  # below it: the GPU model's error, not host time
    host = nnls_relative(x_host(decodes)[kept], host_t[kept])
    if prefills:
        pre_t = wall(prefills) - x_host(prefills) @ host
        ok = pre_t > HOST_MIN_S
        g = nnls_relative(np.vstack([x_gpu(traced), x_gpu(prefills)[ok]]),
                          np.concatenate([gpu_t, pre_t[ok]]))
    g0, gq, gp, gk = g
    coef = [host[0], host[1], host[2], 0.0, 0.0, gq, gp, g0, gk]
    fit = {"form": "parts", "features": list(PARTS_TERMS), "width_s": HINGE_WIDTH_S,
           "coef_s": [float(c) for c in coef]}
    gpu_err = np.abs(x_gpu(traced) @ g / gpu_t - 1)
    host_err = np.abs(x_host(decodes)[kept] @ host / host_t[kept] - 1)
    fit["parts"] = {"source": "profiler trace", "traced_steps": len(traced),
                    "host_steps": int(kept.sum()), "prefill_steps": len(prefills),
                    "gpu_mape_traced": float(gpu_err.mean()), "host_mape": float(host_err.mean()),
                    "host_s_p10_p50_p90": [float(np.percentile(host_t[kept], v))
                                           for v in (10, 50, 90)]}
    fit["domain"] = {"query_tokens": float(max(s["query_tokens"] for s in steps)),
                     "kv_tokens": float(max(s["kv_tokens"] for s in steps)),
                     "rows": float(max(s["num_requests"] for s in steps)),
                     "context_per_row": float(max(s["max_kv_tokens"] for s in steps))}
    return fit


def parts_fit(gpu: str, model: str, root: Path = PARTS_ROOT) -> dict | None:
    """The parts model of (``gpu``, ``model``) from its committed parts runs: the profiler
    traces' where there are any, else the forward probes' clean steps; None where neither gives
    a step (``ValueError`` from the fit where they give too few)."""
    traced = load_trace_parts(root, gpu, model)
    steps = traced or load_parts(root, gpu, model)
    if not steps:
        return None
    fit = fit_trace_parts(steps) if traced else fit_parts(steps)
    return {**fit, "source_runs": sorted({s["run"] for s in steps})}


def predict_steps(fit: dict, steps: list[dict]) -> np.ndarray:
    """Seconds of ``step_logs.steps_from_log`` rows under a ``parts`` (or any) fit."""
    from calibration.step_forms import coef_of, form_of, width_of

    col = {k: np.array([s[k] for s in steps], dtype=float)
           for k in ("num_requests", "query_tokens", "kv_tokens", "attention_pairs", "new_shape")}
    return predict(form_of(fit), coef_of(fit), width_of(fit), col["num_requests"],
                   col["query_tokens"], col["kv_tokens"], col["attention_pairs"] / 1e6,
                   col["new_shape"])


def committed_runs(gpu: str, model: str, root: Path = PARTS_ROOT):
    """(folder, case) of every committed run of (``gpu``, ``model``) under ``root``."""
    for d in sorted((root / gpu).glob("*/")) if (root / gpu).is_dir() else ():
        case = json.loads((d / "case.json").read_text())["case"]
        if case["model"] == model and (d / "steps.csv").exists():
            yield d, case


def load_parts(root: Path = PARTS_ROOT, gpu: str = "h200",
               model: str = "llama-3.1-8b") -> list[dict]:
    """The parts of every committed ``forward_probe`` run of one (GPU, model)."""
    return [{**s, "run": d.name} for d, _ in committed_runs(gpu, model, root)
            for s in parts_from_log(d / "steps.csv")]


def score(fit: dict, whole: dict, gpu: str = "h200", model: str = "llama-3.1-8b",
          root: Path | None = None, engine: str = "hf_cb"):
    """Per committed continuous-batching replay of (``gpu``, ``model``) by ``engine`` (eager
    ``hf_cb`` or ``hf_cb_graph``): its steps' total and per-step error under the parts model
    ``fit`` and the whole-step fit ``whole`` (the shipped one of that engine), with no host-speed
    correction; ``fitted``: whether ``whole`` was fitted on that run (its ``source_runs``; the
    eager parts saw none of them, a graph-parts model's host part the same runs as ``whole``)."""
    import pandas as pd

    from calibration.cases import VALIDATION_ROOT, find_cases, load_case
    from calibration.step_fit import _design, predict_fit
    from calibration.step_logs import steps_from_log

    rows, sources = [], set(whole.get("source_runs", []))
    for path in find_cases(root or VALIDATION_ROOT, include_calibration=True):
        case = load_case(path)
        if case.gpu != gpu or case.kind != "cb" or case.engine != engine or \
                case.info["case"]["model"] != model:
            continue
        steps = steps_from_log(path / "steps.csv", graph=engine == "hf_cb_graph")
        if not steps:
            continue
        x, t = _design(steps)
        by = {"whole": predict_fit(whole, x), "parts": predict_fit(fit, x)}
        row = dict(case=case.name, fitted=f"{gpu}/{case.name}" in sources, steps=len(t),
                   measured_s=float(t.sum()))
        for name, pred in by.items():
            row[f"{name}_total_err"] = float(pred.sum() / t.sum() - 1.0)
            row[f"{name}_step_mape"] = float(np.mean(np.abs(pred - t) / t))
        rows.append(row)
    return pd.DataFrame(rows)


def shape_costs(path: Path) -> list[dict]:
    """What a new step shape costs once, from a run of the shape-cost workload
    (``calibration/capture_workload.py``: every prompt size served alone, twice): per size, its
    prefill step's seconds the first and the second time, and their difference (a CUDA-graph
    capture in graph mode, attention plan builds in eager mode)."""
    seen: dict[int, list[float]] = {}
    with path.open() as f:
        for r in csv.DictReader(f):
            if int(r["num_requests"]) == 1 and int(r["query_tokens"]) > 1:
                seen.setdefault(int(r["query_tokens"]), []).append(
                    float(r["end_s"]) - float(r["schedule_s"]))
    return [dict(query_tokens=q, first_s=t[0], again_s=t[1], new_shape_s=t[0] - t[1])
            for q, t in sorted(seen.items()) if len(t) >= 2]


def new_shape_cost(gpu: str, model: str, graph: bool, root: Path = PARTS_ROOT) -> float | None:
    """The median one-off cost of a new step shape over the committed shape-cost runs of
    (``gpu``, ``model``) in one engine mode (CUDA graphs or eager); None where none ran."""
    costs = [x["new_shape_s"] for d, c in committed_runs(gpu, model, root)
             if bool(c.get("use_cuda_graph")) == graph and "capture_sizes" in str(c.get("trace"))
             for x in shape_costs(d / "steps.csv")]
    return float(np.median(costs)) if costs else None
