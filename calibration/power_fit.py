"""GPU power as a function of what a step does, fitted on the measured ``power.csv`` files
(``calibration/power.py``) of every model profiled on one GPU:

    P = min(cap, c0 + c_mfu * MFU + c_mbu * MBU)

per GPU, where MFU is the step's dense model FLOPs over the GPU's bf16 peak and MBU the weights
and KV it reads over the HBM bandwidth, both over the step's time (what llmsim can compute for
any step). The cap is the enforced power limit; compute-bound steps sit on it. Writes
``llmsim/profiles/<gpu>/_power/power_fit.json`` with the fit's error, per model held out.

    llmsim-lab fit-power --gpu h200
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from llmsim.models import resolve_gpu, resolve_model

PROFILES = Path(__file__).resolve().parents[1] / "llmsim" / "profiles"


def utilisation(d: pd.DataFrame, model: str, gpu: str) -> pd.DataFrame:
    """The measured steps with their MFU and MBU (one GPU: TP 1)."""
    spec, g = resolve_model(model), resolve_gpu(gpu)
    tokens = d["batch"] * d["new_tokens"]
    kv = d["batch"] * (d["context_tokens"] + d["new_tokens"]) * spec.kv_bytes_per_token
    return d.assign(
        mfu=2 * spec.num_params * tokens / (g.peak_bf16_tflops * 1e12) / d["time_s"],
        mbu=(spec.weight_bytes + kv) / (g.memory_bandwidth_gbps * 1e9) / d["time_s"], model=model)


def predict(p: np.ndarray, cap: float, mfu, mbu):
    return np.minimum(cap, p[0] + p[1] * mfu + p[2] * mbu)


def _fit(d: pd.DataFrame, cap: float) -> np.ndarray:
    def residual(p):
        return predict(p, cap, d["mfu"], d["mbu"]) / d["power_w"] - 1
    return least_squares(residual, [100.0, 1000.0, 500.0]).x


def fit(gpu: str) -> dict:
    steps, idle, caps, sources = [], [], [], []
    for f in sorted((PROFILES / gpu).glob("*/power.csv")):
        d = pd.read_csv(f)
        model = f.parent.name
        idle.append(d[d["phase"] == "idle"]["power_w"].to_numpy())
        steps.append(utilisation(d[d["phase"] != "idle"], model, gpu))
        limit = pd.read_csv(f.parent / "power_limit.csv").set_index("quantity")["value"]
        caps.append(float(limit["enforced_power_limit_w"]))
        sources.append(f"{gpu}/{model}")
    if not steps:
        raise SystemExit(f"no power.csv under {PROFILES / gpu}")
    d, cap = pd.concat(steps, ignore_index=True), min(caps)
    p = _fit(d, cap)
    err = predict(p, cap, d["mfu"], d["mbu"]) / d["power_w"] - 1
    held = {}
    for model in d["model"].unique():  # each model predicted by a fit on the others
        if d["model"].nunique() < 2:
            break
        q = _fit(d[d["model"] != model], cap)
        m = d[d["model"] == model]
        e = predict(q, cap, m["mfu"], m["mbu"]) / m["power_w"] - 1
        held[model] = {"rms_pct": round(float(np.sqrt((e**2).mean()) * 100), 2),
                       "max_pct": round(float(e.abs().max() * 100), 2)}
    # idle: the draw before the model loaded (cold) and right after its steps (warm: clocks
    # still up), as a GPU between bursts of a serving run sits
    cold = float(np.mean([i[0] for i in idle]))
    warm = float(np.mean([i[-1] for i in idle]))
    return {"gpu": gpu, "cap_w": cap, "c0_w": round(float(p[0]), 2),
            "c_mfu_w": round(float(p[1]), 2), "c_mbu_w": round(float(p[2]), 2),
            "idle_w": round(warm, 2), "idle_cold_w": round(cold, 2),
            "rms_pct": round(float(np.sqrt((err**2).mean()) * 100), 2),
            "max_pct": round(float(err.abs().max() * 100), 2),
            "held_out_by_model": held, "num_steps": int(len(d)), "sources": sources,
            "form": "P = min(cap_w, c0_w + c_mfu_w * MFU + c_mbu_w * MBU)"}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpu", default="h200")
    a = ap.parse_args(argv)
    out = PROFILES / a.gpu / "_power" / "power_fit.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    info = fit(a.gpu)
    out.write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
