"""Measured cost model: a step's time composed from the operator profiles in ``calibration/``.

    step = L x [qkv(T) + o(T) + gate_up(T) + down(T) + elementwise(T) + attention]
           + embed(T) + lm_head(rows) + TP all-reduces + framework overhead

T is the step's token count, rows the sequences that sample a token. Operators are interpolated
in log-log space on their measured token grid; attention on its (q, context) and (batch,
context) grids. The framework overhead (per step and per layer: kernel launches and Python of
the engine being modelled) is fitted on the whole-model measurements marked ``fit`` and checked
on those marked ``heldout`` (``llmsim-lab report``). numpy only: no torch here.
"""
from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field

from llmsim.errors import InputError
from llmsim.latency.base import LatencyConfigBase, LatencyModel, StepShape
from llmsim.latency.curves import ProfileRangeError as ProfileRangeError  # where users import it
from llmsim.latency.curves import _Curve, _Grid2D
from llmsim.latency.domain import Domain
from llmsim.models.specs import GPUSpec, ModelSpec

OPS = ("qkv", "o", "gate_up", "down", "elementwise")


class ProfiledConfig(LatencyConfigBase):
    kind: Literal["profiled"] = "profiled"
    profiles_dir: str | None = Field(None, description="default: $LLMSIM_PROFILES, else the "
                                                        "profiles shipped in the package")
    max_extrapolation: float = Field(4.0, ge=1, description="how far past the measured grid "
                                                             "(as a factor) before refusing")
    engine: Literal["hf_eager", "kernels"] = Field(
        "hf_eager", description="hf_eager: attention and framework overhead as transformers' "
        "eager engine runs them (validated against its eager whole-model steps); kernels: a "
        "CUDA-graph engine with an in-place KV cache and flash attention (operators timed as "
        "graph replays, validated against the real model's graph-replayed steps)")
    allreduce_from_gpu: str | None = Field(
        None, description="cost TP all-reduces with this GPU's measured curve when the scenario's "
        "GPU has none (e.g. h200 for h100: both NVLink 4); a stated stand-in, not a measurement")
    allreduce_extrapolate: bool = Field(
        False, description="a TP degree with no measured curve: scale the largest measured degree "
        "m < tp by the ring all-reduce's traffic factor ((tp-1)/tp) / ((m-1)/m); an extrapolation")


# Measured profiles ship as package data, so an installed llmsim runs without the repository.
PACKAGED_PROFILES = Path(__file__).resolve().parent.parent / "profiles"


def profiles_root(cfg_dir: str | None = None) -> Path:
    """Where profiles are read: the scenario's ``profiles_dir``, else ``$LLMSIM_PROFILES``,
    else the package's own."""
    if cfg_dir:
        return Path(cfg_dir)
    if os.environ.get("LLMSIM_PROFILES"):
        return Path(os.environ["LLMSIM_PROFILES"])
    return PACKAGED_PROFILES


@cache
def load_profile(root: str, gpu: str, model: str) -> dict:
    d = Path(root) / gpu / model
    if not (d / "ops.csv").is_file():
        raise InputError(f"latency.kind=profiled: no profile for {model} on {gpu} under {Path(root)}; "
                         "point latency.profiles_dir or $LLMSIM_PROFILES at measured profiles "
                         "(calibration/README.md), or use latency.kind=roofline")
    def csv(name):
        return pd.read_csv(d / name) if (d / name).is_file() else None

    def js(name):
        return json.loads((d / name).read_text()) if (d / name).is_file() else None

    # *_graph files: the same operators timed as CUDA-graph replays, and whole-model steps
    # replayed from CUDA graphs (calibration/graph_steps.py): the profile of engine "kernels".
    return {"ops": csv("ops.csv"), "prefill": csv("attn_prefill.csv"),
            "decode": csv("attn_decode.csv"), "hf": csv("attn_hf.csv"), "dir": d,
            "model_steps": csv("model_steps.csv"), "overhead": js("overhead_fit.json"),
            "ops_graph": csv("ops_graph.csv"), "prefill_graph": csv("attn_prefill_graph.csv"),
            "decode_graph": csv("attn_decode_graph.csv"),
            "graph_steps": csv("model_steps_graph.csv"), "kernels_fit": js("kernels_fit.json")}


def _describe_profile(d: Path, engine: str, timing: str) -> str:
    """``profiled (kernels, cuda_graph operators): measured on <GPU>, <date> (<dir>)``."""
    seen = ""
    for f in sorted(d.glob("provenance*.json")):
        try:
            p = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if p.get("gpu_name"):
            seen = f"{p['gpu_name']}, {str(p.get('date_utc', ''))[:10]}".rstrip(", ")
            break
    return (f"profiled ({engine}, {timing} operators): measured on "
            f"{seen or d.parent.name} ({d.parent.name}/{d.name})")


class ProfiledLatency(LatencyModel):
    kind = "profiled"
    Config = ProfiledConfig

    def source(self) -> str:
        return self._source

    def __init__(self, model: ModelSpec, gpu: GPUSpec, tp: int, config: ProfiledConfig,
                 num_layers: int | None = None, overhead: dict | None = None) -> None:
        root = str(profiles_root(config.profiles_dir))
        prof = load_profile(root, gpu.name, model.name)
        self.model, self.tp, self.num_layers = model, tp, num_layers or model.num_layers
        f = config.max_extrapolation
        self.engine = config.engine
        # engine "kernels" prices a CUDA-graph engine: operators timed as graph replays where
        # measured (no host launch gaps between an operator's kernels); older profiles only
        # have eager timings, which overstate small steps.
        graph = self.engine == "kernels" and prof["ops_graph"] is not None
        self.operator_timing = "cuda_graph" if graph else "eager"
        self._source = _describe_profile(prof["dir"], self.engine, self.operator_timing)
        sfx = "_graph" if graph else ""
        all_ops = prof["ops" + sfx]
        ops = all_ops[all_ops["tp"] == tp]
        if ops.empty:
            raise InputError(f"latency.kind=profiled: {model.name} on {gpu.name} has no TP {tp} "
                             f"profile (measured: {sorted(all_ops['tp'].unique())})")
        self._op = {op: _Curve(g["num_tokens"].to_numpy(float), g["time_s"].to_numpy(float),
                               f"{op} tokens", f) for op, g in ops.groupby("op")}
        pre = prof["prefill" + sfx][prof["prefill" + sfx]["tp"] == tp].assign(
            ctx=lambda d: d["kv_tokens"] - d["q_tokens"])
        self._prefill = _Grid2D(pre, "ctx", "q_tokens", "prefill attention", f, log_key=False)
        dec = prof["decode" + sfx][prof["decode" + sfx]["tp"] == tp]
        self._decode = _Grid2D(dec, "batch", "ctx", "decode attention", f, log_key=True)
        if self.engine == "hf_eager":
            if prof["hf"] is None:
                raise InputError(f"latency.kind=profiled: {prof['dir']} has no attn_hf.csv; "
                                 "use latency.engine=kernels or re-run calibration/ops.py")
            hf = prof["hf"][prof["hf"]["tp"] == tp]
            self._decode = _Grid2D(hf[hf["kind"] == "decode"], "batch", "ctx",
                                   "decode attention", f, log_key=True)
            self._chunk = _Grid2D(hf[hf["kind"] == "chunk"], "ctx", "q_tokens",
                                  "chunk attention", f, log_key=True)
        self._domain = _measured_domain(ops, pre, dec, f"{gpu.name}/{model.name}, TP {tp}")
        self._ar, self.allreduce_source = None, ""
        self._dense_cache: dict[tuple[float, int], tuple[float, float, float]] = {}
        if tp > 1:
            self._ar, self.allreduce_source = _allreduce_curve(root, gpu.name, tp, config)
        fitted = prof["kernels_fit"] if self.engine == "kernels" else prof["overhead"]
        ov = overhead if overhead is not None else (fitted or {})
        # The eager engine's host side (Python, kernel launches) runs ahead of the GPU; a step
        # takes the longer of the two, plus a fixed synchronisation/sampling cost. ``gpu_scale``
        # absorbs what isolated operator timings miss in a full pass (cache warmth, fusion);
        # the per-layer KV terms cover the engine's cache handling that grows with the context
        # (transformers' DynamicCache copies every layer's KV on each step). A CUDA-graph engine
        # ("kernels", fitted on graph-replayed whole-model steps) has no host term; its
        # ``layer_offset_s`` removes what timing each operator alone adds per layer.
        self.gpu_scale = float(ov.get("gpu_scale", 1.0))
        self.layer_offset_s = float(ov.get("layer_offset_s", 0.0))
        self.host_layer_s = float(ov.get("host_layer_s", 0.0))
        self.step_overhead_s = float(ov.get("step_overhead_s", 0.0))
        self.decode_kv_s_per_token = float(ov.get("decode_kv_s_per_token", 0.0))
        self.chunk_kv_s_per_token = float(ov.get("chunk_kv_s_per_token", 0.0))

    def domain(self) -> Domain:
        d, ar = self._domain, self.allreduce_source
        if "stand-in" in ar or "extrapolated" in ar:  # a part not measured for this setting
            return Domain(d.max_by_axis, d.about, (f"all-reduce {ar}",))
        return d

    def _dense(self, t: float, rows: int) -> tuple[float, float, float]:
        """(the dense operators of a layer, its two all-reduces' unit, the step's embedding and
        LM head) at ``t`` tokens and ``rows`` sampled rows: remembered, steps repeat them."""
        key = (t, rows)
        hit = self._dense_cache.get(key)
        if hit is None:
            ops = sum(float(self._op[op](t)) for op in OPS)
            ar = (float(self._ar(t * self.model.hidden_size * self.model.dtype_bytes))
                  if self._ar is not None else 0.0)
            step = float(self._op["embed"](t)) + float(self._op["lm_head"](rows))
            if len(self._dense_cache) > 100_000:
                self._dense_cache.clear()
            hit = self._dense_cache[key] = (ops, ar, step)
        return hit

    def gpu_parts_s(self, shape: StepShape) -> tuple[float, float]:
        """(per-layer GPU time, per-step GPU time) from the operator profiles alone."""
        t = shape.dense_tokens
        rows = max(1, len(shape.prefill_chunks) + shape.num_decode_seqs)
        layer, ar, step = self._dense(t, rows)
        for q, c in shape.prefill_chunks:
            if c > 0 and self.engine == "hf_eager":
                layer += float(self._chunk(c, q))
            else:
                layer += float(self._prefill(c, q))
        if shape.num_decode_seqs:
            b = shape.num_decode_seqs
            ctx = shape.decode_context_max if shape.padded else shape.decode_context_sum / b
            layer += float(self._decode(b, ctx))
        if self._ar is not None:
            layer += 2 * ar
        return layer, step

    def step_time_s(self, shape: StepShape) -> float:
        if shape.is_empty:
            return 0.0
        layer, step = self.gpu_parts_s(shape)
        gpu_s = self.gpu_scale * (self.num_layers * layer + step) + self.num_layers * self.layer_offset_s
        decode_kv, chunk_kv = kv_terms(shape)
        return (max(gpu_s, self.num_layers * self.host_layer_s) + self.step_overhead_s
                + self.num_layers * (self.decode_kv_s_per_token * decode_kv
                                     + self.chunk_kv_s_per_token * chunk_kv))


    def decode_run_step_times_s(self, shape: StepShape, num_steps: int) -> np.ndarray:
        """Vectorised over the run: only the attention context changes from step to step."""
        b = shape.num_decode_seqs
        k = np.arange(num_steps, dtype=float)
        ctx0 = shape.decode_context_max if shape.padded else shape.decode_context_sum / b
        attn: np.ndarray = np.asarray(self._decode(b, ctx0 + k), dtype=float)
        first_layer, step = self.gpu_parts_s(shape)
        fixed_layer = first_layer - float(attn[0])
        gpu_s: np.ndarray = (self.gpu_scale * (self.num_layers * (fixed_layer + attn) + step)
                             + self.num_layers * self.layer_offset_s)
        decode_kv = (b * (shape.decode_context_max + k) if shape.padded
                     else shape.decode_context_sum + b * k)
        times = (np.maximum(gpu_s, self.num_layers * self.host_layer_s) + self.step_overhead_s
                 + self.num_layers * self.decode_kv_s_per_token * decode_kv)
        return times


def _allreduce_curve(root: str, gpu: str, tp: int, cfg: ProfiledConfig) -> tuple[_Curve, str]:
    """The all-reduce time curve for ``tp`` and a line saying where it comes from."""
    measured, src = _allreduce_profiles(root, gpu), gpu
    if not measured and cfg.allreduce_from_gpu:
        measured, src = _allreduce_profiles(root, cfg.allreduce_from_gpu), cfg.allreduce_from_gpu
    scale, m = 1.0, tp
    if tp not in measured:
        lower = [k for k in measured if k < tp]
        if not (cfg.allreduce_extrapolate and lower):
            raise InputError(
                f"latency.kind=profiled: no all-reduce profile for TP {tp} on {gpu} (measured "
                f"TP: {sorted(measured) or 'none'}); measure it with calibration/collectives.py, "
                "or set latency.allreduce_from_gpu / latency.allreduce_extrapolate")
        m = max(lower)
        scale = ((tp - 1) / tp) / ((m - 1) / m)
    a = measured[m]
    source = f"measured on {m} x {src}" + ("" if src == gpu else f" (stand-in for {gpu})")
    if scale != 1.0:
        source = f"extrapolated x{scale:.2f} from TP {m} ({source})"
    curve = _Curve(a["bytes"].to_numpy(float), scale * a["time_s"].to_numpy(float),
                   "all-reduce bytes", cfg.max_extrapolation)
    return curve, source


def _allreduce_profiles(root: str, gpu: str) -> dict[int, pd.DataFrame]:
    out = {}
    for f in (Path(root) / gpu / "_collectives").glob("allreduce_tp*.csv"):
        df = pd.read_csv(f)
        out[int(df["world_size"].iloc[0])] = df
    return out


def _measured_domain(ops: pd.DataFrame, prefill: pd.DataFrame, decode: pd.DataFrame,
                     about: str) -> Domain:
    """The operator grids' reach: dense operators up to the largest token count timed, decode
    attention over its (rows, context) grid, prefill attention up to its longest context."""
    ctx = max(float(decode["ctx"].max()), float(prefill["kv_tokens"].max()))
    return Domain({"query_tokens": float(ops["num_tokens"].max()),
                   "rows": float(decode["batch"].max()),
                   "kv_tokens": max(float((decode["batch"] * decode["ctx"]).max()),
                                    float(prefill["kv_tokens"].max())),
                   "context_per_row": ctx}, f"operator grids of {about}")


def kv_terms(shape: StepShape) -> tuple[float, float]:
    """KV tokens a step's decodes attend over, and those its context-carrying chunks do."""
    decode = (shape.num_decode_seqs * shape.decode_context_max if shape.padded
              else shape.decode_context_sum)
    chunk = sum(q + c for q, c in shape.prefill_chunks if c > 0)
    return float(decode), float(chunk)
