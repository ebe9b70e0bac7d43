"""Measured cases: the runs ``calibration/replay.py`` wrote, read back, and the scenario that
rebuilds each one.

A measured case is a folder: ``requests.csv`` (the llmsim trace format plus measured
``first_token_s``/``last_token_s``), ``case.json`` (the engine's knobs and resolved config) and
its GPU as the parent folder's name.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

import calibration.engine_fit  # noqa: F401  (registers latency.kind engine_fit)
from calibration.step_logs import (
    generate_step_shapes,
    graph_shape,
    packed_shape,
    warmup_graph_shapes,
)
from llmsim.errors import InputError
from llmsim.latency.profiled import profiles_root
from llmsim.scenario import Scenario, scenario_from_dict

METRICS = ("ttft_s", "tpot_s", "e2e_s")
QUANTILES = (50, 90, 99)
VALIDATION_ROOT = Path(__file__).resolve().parent / "validation"


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

    @property
    def engine(self) -> str:
        """The engine_fit variant that prices this run: ``hf_generate`` (static groups),
        ``hf_cb_graph`` (continuous batching with CUDA graphs on) or ``hf_cb`` (eager)."""
        return run_engine(self.info)


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


def run_engine(info: dict) -> str:
    """A run's engine variant from its ``case.json`` (see ``MeasuredCase.engine``): CUDA-graph
    runs are another engine, never mixed into the eager fit or its host speed."""
    if info["case"]["kind"] != "cb":
        return "hf_generate"
    graph = info.get("resolved", {}).get("use_cuda_graph", info["case"].get("use_cuda_graph"))
    if isinstance(graph, list):  # the engine reports (decode, prefill) flags
        graph = any(graph)
    return "hf_cb_graph" if graph else "hf_cb"


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
        "latency": {"kind": "engine_fit", "engine": case.engine,
                    "prebuilt_shapes": prebuilt_shapes(case)},
    }
    if case.kind == "cb":
        data["policy"] = {"kind": "hf_cb", "scheduler": c.get("scheduler", "fifo"),
                          # the engine's resolved budget (a case at the engine's defaults
                          # sets none)
                          "max_num_batched_tokens": int(res["max_batch_tokens"]
                                                        if "max_batch_tokens" in res
                                                        else c["max_batch_tokens"]),
                          "safety_margin": res.get("safety_margin"),
                          "max_num_seqs": res.get("max_requests_per_batch")}
        data["kv_cache"] = {"block_size": int(res.get("block_size", res.get("page_size", 256))),
                            "num_blocks": int(res["num_blocks"]), "watermark": 0.0,
                            "prefix_caching": _shares_prefixes(case)}
    else:  # static generate groups: all arrive at 0, FCFS over the harness's order
        # generate's cache grows with the group (no reservation up front): reserve what the
        # longest request needs, not the context window, or fewer rows fit than it ran
        need = int((case.requests["prompt_tokens"] + case.requests["output_tokens"]).max())
        data["policy"] = {"kind": "static", "max_num_seqs": int(c["batch_size"]),
                          "reserve_tokens": need}
        data["kv_cache"] = {"watermark": 0.0}
    return scenario_from_dict(data, f"case {case.name}", case.path)


def _shares_prefixes(case: MeasuredCase) -> bool:
    """Whether the engine shared cached prompt blocks: as it resolved it, else as the case set it."""
    res = case.info.get("resolved", {})
    shared = res.get("use_prefix_sharing", res.get("_use_prefix_sharing"))
    if shared is None:
        shared = case.info.get("knobs_set", {}).get("allow_block_sharing", False)
    return bool(shared)


def prebuilt_shapes(case: MeasuredCase) -> list[tuple[int, int, int]]:
    """Attention shapes the case's engine process had built before it started: those of the
    cases the replay ran earlier in the same process (``case.json`` ``process.after``), from
    their measured groups (static) or logged steps (continuous batching), and in graph mode the
    graphs the replay's warm-up captured. A replay that starts each case in a fresh process
    (the default) has no others."""
    # in graph mode the replay's warm-up captured its graphs before the case started
    shapes: set[tuple[int, int, int]] = set(
        warmup_graph_shapes() if case.engine == "hf_cb_graph" else ())
    for name in (case.info.get("process") or {}).get("after", []):
        d = case.path.parent / name
        if (d / "batches.csv").exists():
            for b in pd.read_csv(d / "batches.csv").itertuples():
                shapes.update(generate_step_shapes(int(b.rows), int(b.padded_prompt_tokens),
                                                   int(b.new_tokens)))
        elif (d / "steps.csv").exists():
            st = pd.read_csv(d / "steps.csv")
            if case.engine == "hf_cb_graph":  # the graphs captured so far
                shapes.update(graph_shape(int(q), int(k), int(m)) for q, k, m in
                              zip(st["query_tokens"], st["kv_tokens"], st["max_kv_tokens"]))
            else:
                shapes.update(packed_shape(int(q), int(k))
                              for q, k in zip(st["query_tokens"], st["kv_tokens"]))
        else:
            raise InputError(f"{case.path}: ran after {name} in one process, but {d} holds no "
                             f"batches.csv or steps.csv to know which plans it built")
    return sorted(shapes)

