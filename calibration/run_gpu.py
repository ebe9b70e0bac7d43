"""One command per GPU machine: measure a list of models (operators, whole-model steps, memory,
host CPU attention) plus the machine's transfer bandwidths, write each model's profile folder
with its provenance, and pack each into ``OUT/<gpu>__<model>.tar.gz`` for the trip back.

    python -m calibration.run_gpu --models llama-3.1-8b qwen2.5-7b --out "$OUT" --budget-s 540
"""
from __future__ import annotations

import argparse
import sys
import tarfile
import time
import traceback
from pathlib import Path

import torch

from calibration import cpu_attention, graph_steps, ops, transfers, whole_model
from calibration.common import make_env, provenance, write_provenance

# TP degrees profiled per model: TP 1 is always measured (the whole-model ground truth runs on
# one GPU), plus the degree the model is deployed at in the seed papers' setups.
TP = {"yi-34b": [1, 2], "llama-3.1-70b": [1, 4], "llama-2-70b": [1, 4]}
CPU_ATTENTION = {"yi-34b": 2, "llama-2-70b": 4, "llama-3.1-70b": 4}


def gpu_slug() -> str:
    if not torch.cuda.is_available():
        return "cpu"
    name = torch.cuda.get_device_name(0).lower()
    for slug in ("h200", "h100", "a100"):
        if slug in name:
            return slug
    return name.replace(" ", "-")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--budget-s", type=float, default=540.0, help="skip models past this time")
    ap.add_argument("--transfers", action="store_true")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--rounds", type=int, default=1, help="whole-model grid repeats, interleaved")
    ap.add_argument("--stages", nargs="+", default=["ops", "model"], choices=["ops", "model", "graph", "graph_attn"],
                    help="graph: whole-model steps replayed from CUDA graphs (engine: kernels)")
    a = ap.parse_args()
    t0 = time.time()
    env = make_env(a.smoke)
    gpu = gpu_slug()
    work = a.out / "work"
    command = "python -m calibration.run_gpu " + " ".join(sys.argv[1:])
    if a.transfers:
        d = work / gpu / "_machine"
        transfers.run(d, a.smoke)
        write_provenance(d / "provenance.json", provenance(env, command))
        _pack(a.out, gpu, "_machine", d)
    for model in a.models:
        if time.time() - t0 > a.budget_s:
            print(f"SKIP {model}: budget spent", flush=True)
            continue
        d = work / gpu / model
        started = time.time()
        try:
            if "ops" in a.stages:
                ops.run(model, TP.get(model, [1]), d, a.smoke)
            if "model" in a.stages:
                whole_model.run(model, d, a.smoke, a.rounds)
            if "graph_attn" in a.stages:  # only the graph-timed prefill/chunk attention grid
                ops.run(model, TP.get(model, [1]), d, a.smoke, graphs=True, parts=("prefill",))
            if "graph" in a.stages:  # operators and whole-model steps as CUDA-graph replays
                ops.run(model, TP.get(model, [1]), d, a.smoke, graphs=True)
                graph_steps.run(model, d, a.smoke)
            if model in CPU_ATTENTION and "ops" in a.stages:
                cpu_attention.run(model, CPU_ATTENTION[model], d, a.smoke)
        except Exception:
            traceback.print_exc()
            print(f"FAILED {model}", flush=True)
        write_provenance(d / f"provenance_{'_'.join(a.stages)}.json", provenance(
            env, command, {"model": model, "tp_profiled": TP.get(model, [1]),
                           "stages": a.stages, "rounds": a.rounds,
                           "seconds": round(time.time() - started, 1),
                           **whole_model.CUDNN_FALLBACK,
                           "graph_fallback": dict(graph_steps.GRAPH_FALLBACK)}))
        _pack(a.out, gpu, model, d)
        print(f"DONE {model} in {time.time() - started:.0f}s (total {time.time() - t0:.0f}s)",
              flush=True)
        if env.is_cuda:
            torch.cuda.empty_cache()


def _pack(out: Path, gpu: str, name: str, folder: Path) -> None:
    with tarfile.open(out / f"{gpu}__{name}.tar.gz", "w:gz") as tar:
        tar.add(folder, arcname=f"{gpu}/{name}")


if __name__ == "__main__":
    main()
