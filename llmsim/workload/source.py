"""Turn a workload config into the ordered list of ``Request`` objects a run serves."""
from __future__ import annotations

import math
from itertools import repeat
from pathlib import Path

import numpy as np
import pandas as pd

from llmsim.errors import InputError
from llmsim.request import Request, ServiceClass
from llmsim.workload import config as wc
from llmsim.workload.conversation import conversation_frame
from llmsim.workload.draws import arrivals, clip_tokens, lengths, resolve_path
from llmsim.workload.traces import read_trace


def workload_frame(cfg, rng: np.random.Generator, base_dir: Path) -> pd.DataFrame:
    """The workload as a trace frame (arrival_s, prompt_tokens, output_tokens, ...)."""
    if isinstance(cfg, wc.MixWorkload):
        return _mix_frame(cfg, rng, base_dir)
    if isinstance(cfg, wc.TraceWorkload):
        return _trace_frame(cfg, base_dir)
    if isinstance(cfg, wc.ConversationWorkload):
        return conversation_frame(cfg, rng, base_dir)
    return _synthetic_frame(cfg, rng, base_dir)


def _mix_frame(cfg: wc.MixWorkload, rng: np.random.Generator, base_dir: Path) -> pd.DataFrame:
    """Streams drawn one after the other from the run's RNG, merged by arrival (stable, so
    ties keep stream order). Best-effort rows carry no SLO (policies.md section 9.1)."""
    frames = []
    for i, stream in enumerate(cfg.streams):
        df = workload_frame(stream, rng, base_dir).assign(stream=i)
        be = df["service_class"] == "best_effort"
        for col in ("ttft_slo_s", "tpot_slo_s", "deadline_s"):
            if col not in df:
                df[col] = np.nan
            df.loc[be, col] = np.inf
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    return df.sort_values("arrival_s", kind="stable").reset_index(drop=True)


def _trace_frame(cfg: wc.TraceWorkload, base_dir: Path) -> pd.DataFrame:
    if cfg.format == "sharegpt_lengths":
        raise InputError("workload.format: sharegpt_lengths has no timestamps; use it as an "
                         "empirical length distribution in a synthetic workload")
    df = read_trace(resolve_path(cfg.path, base_dir), cfg.format)
    t = df["arrival_s"]
    keep = t >= cfg.start_s
    if cfg.duration_s is not None:
        keep &= t < cfg.start_s + cfg.duration_s
    df = df[keep]
    if cfg.max_requests is not None:
        df = df.head(cfg.max_requests)
    if df.empty:
        raise InputError("workload: the window (start_s/duration_s) selects no requests")
    df = df.copy()
    df["arrival_s"] = (df["arrival_s"] - df["arrival_s"].iloc[0]) * cfg.time_scale
    if cfg.target_rate_per_s is not None and len(df) > 1:
        span = df["arrival_s"].iloc[-1]
        if span > 0:
            df["arrival_s"] *= (len(df) - 1) / span / cfg.target_rate_per_s
    if cfg.closed:
        df["arrival_s"] = 0.0
    if cfg.max_prompt_tokens:
        df["prompt_tokens"] = df["prompt_tokens"].clip(upper=cfg.max_prompt_tokens)
    if cfg.max_output_tokens:
        df["output_tokens"] = df["output_tokens"].clip(upper=cfg.max_output_tokens)
    if "service_class" not in df.columns:
        df["service_class"] = cfg.service_class
    if "priority" not in df.columns:
        df["priority"] = cfg.priority
    return df.reset_index(drop=True)


def _synthetic_frame(cfg: wc.SyntheticWorkload, rng: np.random.Generator,
                     base_dir: Path) -> pd.DataFrame:
    n = cfg.num_requests
    arrival = arrivals(cfg.arrival, n, rng)
    p, o = cfg.prompt_tokens, cfg.output_tokens
    if (isinstance(p, wc.EmpiricalLength) and isinstance(o, wc.EmpiricalLength)
            and (p.path, p.format) == (o.path, o.format)):  # resample whole rows: keep correlation
        src = read_trace(resolve_path(p.path, base_dir), p.format)
        idx = rng.integers(0, len(src), size=n)
        prompt = clip_tokens(src["prompt_tokens"].to_numpy()[idx], p.max_tokens)
        output = clip_tokens(src["output_tokens"].to_numpy()[idx], o.max_tokens)
    elif (isinstance(p, wc.MixtureLength) and isinstance(o, wc.MixtureLength)
          and [c.weight for c in p.components] == [c.weight for c in o.components]):
        w = np.array([c.weight for c in p.components])
        pick = rng.choice(len(w), size=n, p=w / w.sum())
        prompt = lengths(p, n, rng, base_dir, "prompt_tokens", pick)
        output = lengths(o, n, rng, base_dir, "output_tokens", pick)
    else:
        prompt = lengths(p, n, rng, base_dir, "prompt_tokens")
        output = lengths(o, n, rng, base_dir, "output_tokens")
    return pd.DataFrame({"arrival_s": arrival, "prompt_tokens": prompt, "output_tokens": output,
                         "service_class": cfg.service_class, "priority": cfg.priority})


def _f(v, default: float) -> float:
    return default if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def build_requests(df: pd.DataFrame, ttft_slo_s: float | None, tpot_slo_s: float | None,
                   deadline_s: float | None, slo_scale: float = 1.0) -> list[Request]:
    """Requests from a trace frame; per-row SLOs win over the scenario's, all scaled. Reads
    whole columns (a million-request trace: no per-row attribute lookups)."""
    inf, n = math.inf, len(df)

    def col(name: str, default):
        return df[name].tolist() if name in df.columns else repeat(default, n)

    def slo(name: str, default: float | None):
        fallback = default or inf
        return ([_f(v, fallback) for v in df[name].tolist()] if name in df.columns
                else repeat(fallback, n))

    classes: dict[str, ServiceClass] = {}

    def service_class(sc) -> ServiceClass:
        if sc not in classes:
            classes[sc] = ServiceClass[str(sc).upper()]
        return classes[sc]

    out = []
    for i, (arrival, prompt, output, sc, prio, ttft, tpot, rel_deadline, hashes) in enumerate(zip(
            df["arrival_s"].tolist(), df["prompt_tokens"].tolist(), df["output_tokens"].tolist(),
            col("service_class", "latency_sensitive"), col("priority", 0),
            slo("ttft_slo_s", ttft_slo_s), slo("tpot_slo_s", tpot_slo_s),
            slo("deadline_s", deadline_s), col("prefix_hashes", ()))):
        out.append(Request(
            request_id=i, arrival_s=float(arrival), prompt_tokens=int(prompt),
            output_tokens=int(output), service_class=service_class(sc), priority=int(prio),
            ttft_slo_s=ttft * slo_scale, tpot_slo_s=tpot * slo_scale,
            deadline_at_s=float(arrival) + rel_deadline * slo_scale, prefix_hashes=hashes))
    return out
