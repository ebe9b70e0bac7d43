"""Simulator speed: simulated requests and engine iterations per wall-clock second.

    python benchmarks/bench_simulator.py [--scenario benchmarks/azure_conv_vllm.yaml] [--repeat 3]

Default: the full Azure LLM 2023 conversation trace (19,366 requests, ~1 h) through vLLM on 4
instances. Target on a 2-core machine: under 10 s of wall time. Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from llmsim.scenario import load_scenario
from llmsim.simulation import load_requests, simulate

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", default=str(HERE / "azure_conv_vllm.yaml"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--target-s", type=float, default=10.0)
    args = ap.parse_args()
    sc = load_scenario(args.scenario, args.overrides)
    walls = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        res = simulate(sc, load_requests(sc))  # trace parsing included in the timing
        walls.append(time.perf_counter() - t0)
    best = min(walls)
    s = res.summary
    print(json.dumps({
        "scenario": sc.name, "python": platform.python_version(), "wall_s_best": round(best, 3),
        "wall_s_all": [round(w, 3) for w in walls], "num_requests": s["num_requests"],
        "num_iterations": s["num_steps"], "num_step_records": len(res.steps),
        "simulated_s": round(s["makespan_s"], 1),
        "requests_per_wall_s": round(s["num_requests"] / best, 1),
        "iterations_per_wall_s": round(s["num_steps"] / best, 1),
        "meets_target": best < args.target_s,
    }))


if __name__ == "__main__":
    main()
