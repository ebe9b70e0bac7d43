"""Time per simulated request as the fleet grows and as the run lengthens (the scale issue asks
for it flat from 10k to 1M requests and nearly flat from 1 to 64 instances).

    python benchmarks/bench_per_request.py [--instances 1 4 16 64] [--requests 10000 100000]

The fleet scenario (``fleet_64x.yaml``: Llama-3.1-8B H100, vLLM, least-outstanding routing) at
the same load per instance (~70%: 12.81 req/s each), timed as ``bench_simulator`` does
(requests built, event loop, frames and summary; no CSVs or plots). Prints one JSON line per
point: wall, microseconds per request, and scheduling decisions (step records) per request.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from llmsim.scenario import load_scenario
from llmsim.simulation import load_requests, simulate

HERE = Path(__file__).resolve().parent
RATE_PER_INSTANCE = 819.84 / 64


def point(instances: int, requests: int, repeat: int) -> dict:
    sc = load_scenario(HERE / "fleet_64x.yaml", [
        f"cluster.num_instances={instances}", f"workload.num_requests={requests}",
        f"workload.arrival.rate_per_s={RATE_PER_INSTANCE * instances:.4f}"])
    walls = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        res = simulate(sc, load_requests(sc))
        walls.append(time.perf_counter() - t0)
    best = min(walls)
    return {"instances": instances, "requests": requests, "wall_s": round(best, 2),
            "us_per_request": round(1e6 * best / requests, 1),
            "decisions_per_request": round(len(res.steps) / requests, 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", type=int, nargs="+", default=[1, 4, 16, 64])
    ap.add_argument("--requests", type=int, nargs="+", default=[10_000, 100_000],
                    help="run lengths at the largest fleet (the instance sweep uses 20,000)")
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()
    for n in a.instances:
        print(json.dumps(point(n, 20_000, a.repeat)), flush=True)
    for r in a.requests:
        print(json.dumps(point(max(a.instances), r, 1 if r > 50_000 else a.repeat)), flush=True)


if __name__ == "__main__":
    main()
