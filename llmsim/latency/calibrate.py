"""Fit the profiled model's framework overhead on whole-model ``fit`` steps, and report its error
on ``heldout`` steps (and the roofline model's, on the same shapes). numpy only."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from llmsim.latency.base import StepShape
from llmsim.latency.profiled import (ProfiledConfig, ProfiledLatency, kv_terms, load_profile,
                                     profiles_root)
from llmsim.latency.roofline import RooflineConfig, RooflineLatency
from llmsim.models.specs import resolve_gpu, resolve_model


def step_shape(phase: str, batch: int, new_tokens: int, context_tokens: int) -> StepShape:
    """The simulator's shape for one measured whole-model step."""
    if phase == "prefill":
        return StepShape(((new_tokens, 0),) * batch)
    if phase == "decode":
        return StepShape((), batch, batch * (context_tokens + 1), context_tokens + 1)
    return StepShape(((new_tokens, context_tokens),) * batch)


def _predict(lat, df: pd.DataFrame) -> np.ndarray:
    return np.array([lat.step_time_s(step_shape(r.phase, r.batch, r.new_tokens, r.context_tokens))
                     for r in df.itertuples()])


def fit_overhead(gpu: str, model: str, root: Path | None = None) -> dict:
    """Fit the framework terms on the ``fit`` split, minimising squared relative error:

        t = max(gpu_scale * composed_gpu, L * host_layer) + step_overhead
            + L * (decode_kv * decode_kv_tokens + chunk_kv * chunk_kv_tokens)

    a grid over (gpu_scale, host_layer), linear least squares for the rest (kept >= 0)."""
    root = root or profiles_root()
    prof = load_profile(str(root), gpu, model)
    steps = prof["model_steps"]
    if steps is None:
        raise ValueError(f"no model_steps.csv for {model} on {gpu}")
    fit = steps[steps["split"] == "fit"]
    layers = int(steps["num_layers"].iloc[0])
    lat = ProfiledLatency(resolve_model(model), resolve_gpu(gpu), 1, ProfiledConfig(),
                          num_layers=layers, overhead={})
    gpu_s = _predict(lat, fit)
    shapes = [step_shape(r.phase, r.batch, r.new_tokens, r.context_tokens) for r in fit.itertuples()]
    kv = np.array([kv_terms(s) for s in shapes]) * layers
    m = fit["time_s"].to_numpy()
    w = 1.0 / m
    best = None
    for scale in np.linspace(0.8, 1.25, 46):
        for host in np.linspace(0.0, 1.5 * m.min() / layers, 61):
            base = np.maximum(scale * gpu_s, layers * host)
            a = np.column_stack([np.ones_like(m), kv]) * w[:, None]
            coef, *_ = np.linalg.lstsq(a, (m - base) * w, rcond=None)
            coef = np.maximum(coef, 0.0)
            pred = base + coef[0] + kv @ coef[1:]
            err = float(np.mean(((pred - m) / m) ** 2))
            if best is None or err < best[0]:
                best = (err, scale, host, coef)
    _, scale, host, coef = best
    out = {"gpu_scale": float(scale), "host_layer_s": float(host), "step_overhead_s": float(coef[0]),
           "decode_kv_s_per_token": float(coef[1]), "chunk_kv_s_per_token": float(coef[2]),
           "fitted_on_layers": layers, "num_fit_steps": int(len(fit)),
           "fit_rms_relative_error": float(np.sqrt(best[0]))}
    (prof["dir"] / "overhead_fit.json").write_text(json.dumps(out, indent=2) + "\n")
    load_profile.cache_clear()
    return out


def report(gpu: str, model: str, root: Path | None = None) -> pd.DataFrame:
    """Per held-out step: measured, profiled and roofline predictions, relative errors."""
    root = root or profiles_root()
    prof = load_profile(str(root), gpu, model)
    steps = prof["model_steps"]
    held = steps[steps["split"] == "heldout"].copy()
    layers = int(steps["num_layers"].iloc[0])
    m, g = resolve_model(model), resolve_gpu(gpu)
    prof_lat = ProfiledLatency(m, g, 1, ProfiledConfig(), num_layers=layers)
    roof = RooflineLatency(m.model_copy(update={"num_layers": layers}), g, 1, RooflineConfig())
    held["profiled_s"] = _predict(prof_lat, held)
    held["roofline_s"] = _predict(roof, held)
    for k in ("profiled", "roofline"):
        held[f"{k}_err"] = (held[f"{k}_s"] - held["time_s"]) / held["time_s"]
    held.insert(0, "model", model)
    held.insert(0, "gpu", gpu)
    return held


def summarize_report(df: pd.DataFrame) -> pd.DataFrame:
    g = df.groupby(["gpu", "model", "phase"])
    out = pd.DataFrame({
        "n": g.size(),
        "profiled_mape_%": g["profiled_err"].apply(lambda e: 100 * e.abs().mean()),
        "profiled_worst_%": g["profiled_err"].apply(lambda e: 100 * e.abs().max()),
        "roofline_mape_%": g["roofline_err"].apply(lambda e: 100 * e.abs().mean()),
        "roofline_worst_%": g["roofline_err"].apply(lambda e: 100 * e.abs().max()),
    })
    return out.round(1).reset_index()


def available(root: Path | None = None) -> list[tuple[str, str]]:
    root = root or profiles_root()
    return sorted((d.parent.name, d.name) for d in root.glob("*/*")
                  if (d / "model_steps.csv").is_file() and (d / "ops.csv").is_file())


def fit_roofline(gpu: str, model: str, engine: str = "kernels", root: Path | None = None) -> dict:
    """Roofline efficiencies that best reproduce the measured profile on ``gpu`` (least squared
    relative error over a grid of prefill and decode steps). Use them to correct the roofline on
    a GPU that cannot be measured (e.g. the A100 of a paper's setup)."""
    root = root or profiles_root()
    m, g = resolve_model(model), resolve_gpu(gpu)
    prof = ProfiledLatency(m, g, 1, ProfiledConfig(profiles_dir=str(root), engine=engine))
    shapes = [step_shape("prefill", b, s, 0) for b in (1, 4) for s in (128, 512, 2048, 8192)
              if b * s <= 16384]
    shapes += [step_shape("decode", b, 1, c) for b in (1, 8, 32, 128) for c in (256, 1024, 4096)
               if b * c <= 131072]
    target = np.array([prof.step_time_s(s) for s in shapes])
    best = None
    for ce in np.linspace(0.2, 1.0, 33):
        for be in np.linspace(0.3, 1.0, 29):
            for ov in (0.0, 0.001, 0.002, 0.003, 0.004, 0.006, 0.008, 0.010, 0.012, 0.016, 0.020):
                roof = RooflineLatency(m, g, 1, RooflineConfig(
                    compute_efficiency=ce, bandwidth_efficiency=be, step_overhead_s=ov))
                pred = np.array([roof.step_time_s(s) for s in shapes])
                err = float(np.mean(((pred - target) / target) ** 2))
                if best is None or err < best[0]:
                    best = (err, ce, be, ov)
    return {"compute_efficiency": round(float(best[1]), 3),
            "bandwidth_efficiency": round(float(best[2]), 3), "step_overhead_s": best[3],
            "rms_relative_error": round(float(np.sqrt(best[0])), 4), "gpu": gpu, "model": model,
            "engine": engine}
