"""Scale benchmarks: wall time end to end (a fresh process: imports, simulation, CSVs, plots)
and peak RSS, for the workloads of the scale issue; ratios to Vidur's recorded figures.

    python benchmarks/bench_scale.py                       # every workload, default sizes
    python benchmarks/bench_scale.py vidur_steps           # the same, every step decided apart
    python benchmarks/bench_scale.py vidur fleet --fleet-requests 1000000 --repeat 1
    python benchmarks/bench_scale.py sweep                 # 1,000 points on a local Dask cluster

Prints one JSON line per workload. Speed targets are checked here, never by timed tests. The
Vidur workload's trace is built at run time from ../shared/traces (never committed).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "traces" / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv"
# Vidur on the same machine class (the scale issue): 274 s for its 50k workload plus 46 min of
# training its cost model.
VIDUR_S, VIDUR_TRAIN_S = 274.0, 46 * 60.0


def vidur_trace(out: Path, n: int = 50_000, seed: int = 0, max_tokens: int = 4096) -> Path:
    """Vidur's workload from the Azure conv 2023 lengths: the trace three times over, each
    request above ``max_tokens`` scaled down proportionally, shuffled, Poisson 2 req/s."""
    src = pd.read_csv(SHARED)
    p = np.tile(src["ContextTokens"].to_numpy(), 3).astype(float)
    o = np.tile(src["GeneratedTokens"].to_numpy(), 3).astype(float)
    scale = np.minimum(1.0, max_tokens / (p + o))
    p, o = np.maximum(1, np.floor(p * scale)), np.maximum(1, np.floor(o * scale))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(p))[:n]
    arrivals = np.cumsum(rng.exponential(1 / 2.0, size=n))
    pd.DataFrame({"arrival_s": arrivals - arrivals[0], "prompt_tokens": p[order].astype(int),
                  "output_tokens": o[order].astype(int)}).to_csv(out, index=False)
    return out


def run(scenario: Path, sets: list[str], plots: bool, work: Path) -> tuple[float, float]:
    """(wall s, peak RSS MiB) of one ``llmsim run`` in a fresh process."""
    cmd = [sys.executable, "-m", "llmsim", "run", str(scenario), "--out", str(work / "out"),
           "--no-progress", *(["--no-plots"] if not plots else [])]
    for s in sets:
        cmd += ["--set", s]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if status != 0:
        raise SystemExit(f"{scenario}: llmsim run failed: {proc.stderr.read().decode()[-500:]}")
    return wall, usage.ru_maxrss / 1024  # KiB on Linux


SWEEP = """# 1,000 quickstart variants: 2 policies x 10 arrival rates x 50 seeds
scenario: {scenario}
grid:
  policy: [{{kind: vllm}}, {{kind: sarathi}}]
  workload.arrival.rate_per_s: [10, 14, 18, 22, 26, 30, 34, 38, 42, 46]
  seed: [{seeds}]
"""


def sweep(work: Path, workers: str) -> dict:
    """The 1,000-point quickstart sweep on a local Dask cluster, then the same command again
    (every point done: the resume path alone)."""
    sc = HERE.parent / "llmsim" / "scenarios" / "quickstart.yaml"
    spec = work / "sweep.yaml"
    spec.write_text(SWEEP.format(scenario=sc, seeds=", ".join(map(str, range(50)))))
    cmd = [sys.executable, "-m", "llmsim", "sweep", str(spec), "--out", str(work / "sweep"),
           "--cluster", workers]
    walls = []
    for _ in range(2):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        walls.append(time.perf_counter() - t0)
    rows = len(pd.read_parquet(work / "sweep" / "sweep.parquet"))
    return {"points": rows, "wall_s": round(walls[0], 1), "resume_wall_s": round(walls[1], 2),
            "s_per_point": round(walls[0] / rows, 3), "cluster": workers}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("workloads", nargs="*", default=["vidur", "fleet", "azure", "help"])
    ap.add_argument("--fleet-requests", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--sweep-cluster", default="local", help="--cluster of the sweep workload")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in args.workloads:
            row: dict = {"workload": name, "python": platform.python_version(),
                         "cpus": os.cpu_count()}
            if name == "help":
                walls = []
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    subprocess.run([sys.executable, "-m", "llmsim", "--help"], check=True,
                                   capture_output=True)
                    walls.append(time.perf_counter() - t0)
                row.update(wall_s=round(min(walls), 3), target_s=0.3)
                print(json.dumps(row), flush=True)
                continue
            if name == "sweep":
                print(json.dumps({**row, **sweep(work, args.sweep_cluster)}), flush=True)
                continue
            if name in ("vidur", "vidur_steps"):
                if not SHARED.is_file():
                    print(json.dumps({**row, "skipped": f"{SHARED} absent"}), flush=True)
                    continue
                sc = work / "vidur_50k.yaml"
                sc.write_text((HERE / "vidur_50k.yaml").read_text())
                vidur_trace(work / "vidur_50k.csv")
                sets, target = [], 3.0
                if name == "vidur_steps":  # every step decided apart (the issue: >= 3x 27.2 s)
                    sets, target = ["simulation.fuse_decode_steps=false"], round(27.2 / 3, 2)
            elif name == "fleet":
                sc, sets = HERE / "fleet_64x.yaml", [f"workload.num_requests={args.fleet_requests}"]
                target = 60.0 if args.fleet_requests >= 1_000_000 else None
            elif name == "azure":
                if not SHARED.is_file():
                    print(json.dumps({**row, "skipped": f"{SHARED} absent"}), flush=True)
                    continue
                sc, sets, target = HERE / "azure_conv_vllm.yaml", [], 1.0
            else:
                raise SystemExit(f"unknown workload {name!r}")
            results = [run(sc, sets, not args.no_plots, work) for _ in range(args.repeat)]
            wall = min(w for w, _ in results)
            row.update(wall_s=round(wall, 2), peak_rss_mib=round(max(m for _, m in results)),
                       target_s=target, sets=sets, plots=not args.no_plots)
            if name in ("vidur", "vidur_steps"):
                row.update(x_vidur=round(VIDUR_S / wall, 1),
                           x_vidur_with_training=round((VIDUR_S + VIDUR_TRAIN_S) / wall, 1))
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
