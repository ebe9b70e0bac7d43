"""GPU energy and cost of a run: pure functions over its step records, a power model and a price.

Each step's power per GPU follows from what it does: ``P = min(cap, c0 + c_mfu * MFU + c_mbu *
MBU)``, MFU being the step's dense model FLOPs over the GPU's bf16 peak and MBU the weights and
KV it reads over its HBM bandwidth, both over the step's time; a GPU outside steps draws its idle
power. The coefficients are fitted on energy measured per step on a GPU (``llmsim-lab
fit-power``: ``profiles/<gpu>/_power/power_fit.json``); a GPU without its own fit borrows the
H200's, scaled to its board power (``tdp_w``), and says so.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache

import numpy as np
import pandas as pd

from llmsim.latency.profiled import PACKAGED_PROFILES
from llmsim.models.specs import GPUSpec

REFERENCE_GPU = "h200"


@dataclass(frozen=True)
class PowerModel:
    cap_w: float
    c0_w: float
    c_mfu_w: float
    c_mbu_w: float
    idle_w: float
    source: str

    def power_w(self, mfu: np.ndarray, mbu: np.ndarray) -> np.ndarray:
        return np.minimum(self.cap_w, self.c0_w + self.c_mfu_w * mfu + self.c_mbu_w * mbu)


@cache
def _fit(gpu: str) -> dict | None:
    path = PACKAGED_PROFILES / gpu / "_power" / "power_fit.json"
    return json.loads(path.read_text()) if path.exists() else None


def power_model(gpu: GPUSpec) -> PowerModel | None:
    """The GPU's measured power model, else the reference GPU's scaled to its board power;
    None for a GPU with neither (a custom spec without ``tdp_w``)."""
    own = _fit(gpu.name)
    if own is not None:
        return _model(own, 1.0, f"measured on {gpu.name.upper()} ({own['rms_pct']}% rms per step)")
    ref = _fit(REFERENCE_GPU)
    if ref is None or gpu.tdp_w is None:
        return None
    return _model(ref, gpu.tdp_w / float(ref["cap_w"]),
                  f"{REFERENCE_GPU.upper()} measurements scaled to {gpu.tdp_w:.0f} W "
                  "(extrapolated: no energy measured on this GPU)")


def _model(fit: dict, scale: float, source: str) -> PowerModel:
    w = {k: float(fit[k]) * scale for k in ("cap_w", "c0_w", "c_mfu_w", "c_mbu_w", "idle_w")}
    return PowerModel(w["cap_w"], w["c0_w"], w["c_mfu_w"], w["c_mbu_w"], w["idle_w"], source)


def gpu_energy(steps: pd.DataFrame, gpus_of: dict[int, int], makespan_s: float,
               pm: PowerModel, gpu: GPUSpec, flops_per_token: float, weight_bytes: float,
               kv_bytes_per_token: float) -> dict:
    """Energy of every GPU over the run: each instance's steps at their power, the rest of the
    window idle. ``gpus_of``: GPUs per instance (CPU-only instances are left out); weights and
    KV bytes are the whole model's, spread over an instance's GPUs."""
    busy_j, busy_s = 0.0, 0.0
    gpu_steps = steps[steps["instance"].isin(list(gpus_of))] if len(steps) else steps
    if len(gpu_steps):
        g = gpu_steps["instance"].map(gpus_of).to_numpy(dtype=float)
        dur = gpu_steps["duration_s"].to_numpy(dtype=float)
        iters = gpu_steps["num_iterations"].to_numpy(dtype=float)
        tokens = (gpu_steps["num_prefill_tokens"] + gpu_steps["num_decode_seqs"] * iters
                  + gpu_steps["num_offloaded_tokens"]).to_numpy(dtype=float)
        read = iters * (weight_bytes + kv_bytes_per_token * gpu_steps["kv_used_tokens"].to_numpy())
        with np.errstate(divide="ignore", invalid="ignore"):
            mfu = np.where(dur > 0, tokens * flops_per_token / (g * gpu.peak_bf16_tflops * 1e12 * dur), 0)
            mbu = np.where(dur > 0, read / (g * gpu.memory_bandwidth_gbps * 1e9 * dur), 0)
        busy_j = float((pm.power_w(mfu, mbu) * dur * g).sum())
        busy_s = float((dur * g).sum())  # GPU-seconds in steps
    gpu_s = makespan_s * sum(gpus_of.values())
    idle_j = max(0.0, gpu_s - busy_s) * pm.idle_w
    total = busy_j + idle_j
    return {"energy_j": total, "busy_energy_j": busy_j, "idle_energy_j": idle_j,
            "mean_power_w_per_gpu": total / gpu_s if gpu_s else float("nan"),
            "power_model": pm.source}


def run_cost(num_gpus: int, makespan_s: float, usd_per_gpu_hour: float) -> dict:
    return {"usd": num_gpus * makespan_s / 3600 * usd_per_gpu_hour,
            "usd_per_gpu_hour": usd_per_gpu_hour}


def per_output(summary: dict, energy: dict | None, cost: dict | None) -> None:
    """Add the per-token and per-goodput views to ``energy`` and ``cost`` (in place)."""
    out_tokens = summary["throughput"]["output_tokens_per_s"] * summary["makespan_s"]
    good = summary["goodput"]["requests_per_s"] * summary["makespan_s"]
    if energy is not None:
        energy["j_per_output_token"] = energy["energy_j"] / out_tokens if out_tokens else float("nan")
        kw = energy["energy_j"] / summary["makespan_s"] / 1e3 if summary["makespan_s"] else 0.0
        energy["goodput_requests_per_s_per_kw"] = (summary["goodput"]["requests_per_s"] / kw
                                                   if kw else float("nan"))
    if cost is not None:
        cost["usd_per_million_output_tokens"] = (cost["usd"] / out_tokens * 1e6
                                                 if out_tokens else float("nan"))
        cost["goodput_requests_per_usd"] = good / cost["usd"] if cost["usd"] else float("nan")
