"""Prefix caching on the Mooncake conversation trace (its real prefix-block hashes): TTFT, SLO
attainment and the hit rate, with and without caching, per router and cost model.

    python benchmarks/prefix_caching.py [--duration-s 600] [--instances 4] [--jobs 2]

4 x Llama-3.1-8B on H100 (TP 1), Sarathi-Serve chunked prefill (8,192-token steps: the trace's
prompts average 12K tokens and reach 100K+), the first ``--duration-s`` seconds of
``../shared/traces/mooncake_fast25/conversation_trace.jsonl`` (prompts clipped at 60,000 tokens:
the measured profiles reach 4x their 16K grid), SLOs TTFT 5 s / TPOT 0.1 s.
Prints a markdown table.
"""
from __future__ import annotations

import argparse
import itertools
from multiprocessing import Pool
from pathlib import Path

from llmsim.scenario import load_scenario
from llmsim.simulation import simulate

TRACE = (Path(__file__).resolve().parents[2] / "shared" / "traces" / "mooncake_fast25"
         / "conversation_trace.jsonl")
COSTS = {"roofline": "latency={kind: roofline}",
         "profiled kernels": "latency={kind: profiled, engine: kernels}"}


def run(args: tuple) -> dict:
    cost, router, caching, duration_s, instances = args
    sc = load_scenario(None, [
        f"workload={{kind: trace, path: {TRACE}, format: mooncake, duration_s: {duration_s}, max_prompt_tokens: 60000}}",
        "policy={kind: sarathi, max_num_batched_tokens: 8192}", COSTS[cost],
        "cluster.max_model_len=65536", f"cluster.num_instances={instances}",
        f"cluster.router={router}", f"kv_cache.prefix_caching={str(caching).lower()}",
        "slo={ttft_s: 5.0, tpot_s: 0.1}"])
    s = simulate(sc).summary
    return {"cost model": cost, "router": router, "prefix caching": caching,
            "hit rate": s.get("prefix_cache", {}).get("hit_rate", 0.0),
            "TTFT mean s": s["ttft_s"]["mean"], "TTFT p90 s": s["ttft_s"]["p90"],
            "attainment": s["slo_attainment"]["both"],
            "served req/s": s["throughput"]["requests_per_s"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration-s", type=float, default=600.0)
    ap.add_argument("--instances", type=int, default=4)
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    grid = [(c, r, p, a.duration_s, a.instances) for c, r, p in itertools.product(
        COSTS, ("round_robin", "least_outstanding", "least_kv", "prefix_aware"), (False, True))]
    with Pool(a.jobs) as pool:
        rows = pool.map(run, grid)
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |\n|" + " --- |" * len(cols))
    for r in rows:
        print("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v)
                                for v in r.values()) + " |")


if __name__ == "__main__":
    main()
