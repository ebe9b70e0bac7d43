"""Fit the profiled model's framework overhead on whole-model ``fit`` steps, and report its error
on ``heldout`` steps (and the roofline model's, on the same shapes). numpy only."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from llmsim.latency.base import StepShape
from llmsim.latency.profiled import (
    ProfiledConfig,
    ProfiledLatency,
    kv_terms,
    load_profile,
    profiles_root,
)
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


# What each engine's profiled model is checked against: transformers' eager steps (DynamicCache,
# host-bound when small) or the same model's steps replayed from CUDA graphs (in-place cache,
# mask-free attention; calibration/graph_steps.py).
ENGINE_STEPS = {"hf_eager": "model_steps", "kernels": "graph_steps"}


def _steps(prof: dict, engine: str, gpu: str, model: str) -> pd.DataFrame:
    steps = prof[ENGINE_STEPS[engine]]
    if steps is None:
        raise ValueError(f"no whole-model steps for engine {engine} of {model} on {gpu}")
    return steps


def _unfitted(gpu: str, model: str, root: Path, engine: str, layers: int) -> ProfiledLatency:
    return ProfiledLatency(resolve_model(model), resolve_gpu(gpu), 1,
                           ProfiledConfig(profiles_dir=str(root), engine=engine),
                           num_layers=layers, overhead={})


def fit_overhead(gpu: str, model: str, root: Path | None = None, engine: str = "hf_eager") -> dict:
    """Fit the framework terms of ``engine`` on its ``fit`` whole-model steps (least squared
    relative error) and write them beside the profile; see ``fit_eager`` and ``fit_kernels``."""
    root = root or profiles_root()
    prof = load_profile(str(root), gpu, model)
    steps = _steps(prof, engine, gpu, model)
    fit = steps[steps["split"] == "fit"]
    layers = int(steps["num_layers"].iloc[0])
    composed = _predict(_unfitted(gpu, model, root, engine, layers), fit)
    m = fit["time_s"].to_numpy()
    if engine == "kernels":
        out, name = fit_kernels(composed, m, layers), "kernels_fit.json"
    else:
        kv = layers * np.array([kv_terms(step_shape(r.phase, r.batch, r.new_tokens,
                                                    r.context_tokens)) for r in fit.itertuples()])
        out, name = fit_eager(composed, kv, m, layers), "overhead_fit.json"
    out.update(fitted_on_layers=layers, num_fit_steps=int(len(fit)))
    (prof["dir"] / name).write_text(json.dumps(out, indent=2) + "\n")
    load_profile.cache_clear()
    return out


def fit_eager(gpu_s: np.ndarray, kv: np.ndarray, m: np.ndarray, layers: int) -> dict:
    """t = max(gpu_scale * composed_gpu, L * host_layer) + step_overhead
           + L * (decode_kv * decode_kv_tokens + chunk_kv * chunk_kv_tokens)

    a grid over (gpu_scale, host_layer), linear least squares for the rest (kept >= 0)."""
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
    return {"gpu_scale": float(scale), "host_layer_s": float(host),
            "step_overhead_s": float(coef[0]), "decode_kv_s_per_token": float(coef[1]),
            "chunk_kv_s_per_token": float(coef[2]), "fit_rms_relative_error": float(np.sqrt(best[0]))}


def fit_kernels(composed: np.ndarray, m: np.ndarray, layers: int) -> dict:
    """t = gpu_scale * composed + L * layer_offset, by linear least squares on relative error.
    Each operator timed alone carries a few µs that a whole graph does not (the offset, usually
    negative, per layer since it is per operator); the scale absorbs cache warmth. A per-step
    constant is not identifiable beside it (every step of a profile has the same L). (A
    per-KV-token chunk term was tried: it fixes GQA models' 64-token chunks over long context
    but, fitted on four chunk steps, overfits MHA models' chunks; left out.)"""
    a = np.column_stack([composed, np.full_like(m, layers)]) / m[:, None]
    (scale, offset), *_ = np.linalg.lstsq(a, np.ones_like(m), rcond=None)
    pred = scale * composed + offset * layers
    return {"gpu_scale": float(scale), "layer_offset_s": float(offset),
            "fit_rms_relative_error": float(np.sqrt(np.mean(((pred - m) / m) ** 2)))}


def report(gpu: str, model: str, root: Path | None = None, engine: str = "hf_eager") -> pd.DataFrame:
    """Per held-out step of ``engine``'s measurements: measured, profiled and roofline
    predictions, relative errors."""
    root = root or profiles_root()
    prof = load_profile(str(root), gpu, model)
    steps = _steps(prof, engine, gpu, model)
    held = steps[steps["split"] == "heldout"].copy()
    layers = int(steps["num_layers"].iloc[0])
    m, g = resolve_model(model), resolve_gpu(gpu)
    prof_lat = ProfiledLatency(m, g, 1, ProfiledConfig(profiles_dir=str(root), engine=engine),
                               num_layers=layers)
    roof = RooflineLatency(m.model_copy(update={"num_layers": layers}), g, 1, RooflineConfig())
    held["profiled_s"] = _predict(prof_lat, held)
    held["roofline_s"] = _predict(roof, held)
    for k in ("profiled", "roofline"):
        held[f"{k}_err"] = (held[f"{k}_s"] - held["time_s"]) / held["time_s"]
    held.insert(0, "engine", engine)
    held.insert(0, "model", model)
    held.insert(0, "gpu", gpu)
    return held.drop(columns=["method"], errors="ignore")


def summarize_report(df: pd.DataFrame) -> pd.DataFrame:
    keys = [k for k in ("gpu", "model", "engine", "phase") if k in df.columns]
    g = df.groupby(keys)
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


def engines_measured(gpu: str, model: str, root: Path | None = None) -> list[str]:
    """The engines whose whole-model steps this profile has."""
    prof = load_profile(str(root or profiles_root()), gpu, model)
    return [e for e, key in ENGINE_STEPS.items() if prof[key] is not None]


def _grid() -> list:
    """The prefill and decode steps a roofline correction is fitted and checked on."""
    shapes = [step_shape("prefill", b, s, 0) for b in (1, 4) for s in (128, 512, 2048, 8192)
              if b * s <= 16384]
    return shapes + [step_shape("decode", b, 1, c) for b in (1, 8, 32, 128)
                     for c in (256, 1024, 4096) if b * c <= 131072]


def _measured(gpu: str, model: str, engine: str, root: Path | None) -> np.ndarray:
    m, g = resolve_model(model), resolve_gpu(gpu)
    prof = ProfiledLatency(m, g, 1, ProfiledConfig(profiles_dir=str(root or profiles_root()),
                                                   engine=engine))
    return np.array([prof.step_time_s(s) for s in _grid()])


def roofline_transfer_error(fit: dict, gpu: str, root: Path | None = None) -> dict:
    """How well a correction fitted on one GPU's profile predicts another measured GPU's: the
    same efficiencies on ``gpu``'s spec sheet against its profile (relative errors per step;
    the best available estimate of the error when the correction is carried to a GPU that
    cannot be measured, and an optimistic one across GPU generations)."""
    m, g = resolve_model(fit["model"]), resolve_gpu(gpu)
    roof = RooflineLatency(m, g, 1, RooflineConfig(
        compute_efficiency=fit["compute_efficiency"],
        bandwidth_efficiency=fit["bandwidth_efficiency"], step_overhead_s=fit["step_overhead_s"]))
    target = _measured(gpu, fit["model"], fit["engine"], root)
    err = np.array([roof.step_time_s(s) for s in _grid()]) / target - 1.0
    return {"gpu": gpu, "rms_relative_error": round(float(np.sqrt(np.mean(err ** 2))), 4),
            "max_abs_relative_error": round(float(np.abs(err).max()), 4),
            "mean_relative_error": round(float(err.mean()), 4)}


def fit_roofline(gpu: str, model: str, engine: str = "kernels", root: Path | None = None) -> dict:
    """Roofline efficiencies that best reproduce the measured profile on ``gpu`` (least squared
    relative error over a grid of prefill and decode steps). Use them to correct the roofline on
    a GPU that cannot be measured (e.g. the A100 of a paper's setup); ``roofline_transfer_error``
    says how far such a correction carries."""
    m, g = resolve_model(model), resolve_gpu(gpu)
    shapes = _grid()
    target = _measured(gpu, model, engine, root)
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
