"""Prefix caching on the Mooncake conversation trace (its real prefix-block hashes) and on
synthetic multi-turn chat sessions: hit rate (GPU and host tier), TTFT, SLO attainment, per
router, cache tier and cost model.

    python benchmarks/prefix_caching.py [--duration-s 600] [--instances 4] [--jobs 2]

4 x Llama-3.1-8B on H100 (TP 1), Sarathi-Serve chunked prefill (8,192-token steps). Mooncake:
the first ``--duration-s`` seconds of ``../shared/traces/mooncake_fast25/conversation_trace.jsonl``
(prompts average 12K tokens and reach 100K+; clipped at 60,000: the measured profiles reach 4x
their 16K grid). Synthetic: chat sessions opened at 1.5/s for ``--duration-s`` seconds, 6 turns
on average, 30 s think time, three system prompts (2,000 / 800 / 300 tokens), new messages
lognormal median 150, answers median 300 tokens. SLOs TTFT 5 s / TPOT 0.1 s. Caching: off, on the
GPU only, with a 256 GiB host-memory tier per GPU (TP 1 here), or with a 1 TiB local-disk tier and no
host tier (read at the default 6 GB/s). Prints a markdown table (``--caching`` / ``--routers``
run a part of the grid).
"""
from __future__ import annotations

import argparse
import itertools
from multiprocessing import Pool
from pathlib import Path

from md_table import records_table

from llmsim.scenario import load_scenario
from llmsim.simulation import simulate

TRACE = (Path(__file__).resolve().parents[2] / "shared" / "traces" / "mooncake_fast25"
         / "conversation_trace.jsonl")
COSTS = {"roofline": "latency={kind: roofline}",
         "profiled kernels": "latency={kind: profiled, engine: kernels}"}
CACHING = {"off": ["kv_cache.prefix_caching=false"], "gpu": ["kv_cache.prefix_caching=true"],
           "gpu+host": ["kv_cache.prefix_caching=true", "kv_cache.host_prefix_cache_gib=256"],
           "gpu+disk": ["kv_cache.prefix_caching=true", "kv_cache.disk_prefix_cache_gib=1024"]}
ROUTERS = ("round_robin", "least_outstanding", "prefix_aware")


def workload(name: str, duration_s: float) -> str:
    if name == "mooncake":
        return (f"workload={{kind: trace, path: {TRACE}, format: mooncake, "
                f"duration_s: {duration_s}, max_prompt_tokens: 60000}}")
    sessions = int(1.5 * duration_s)
    return ("workload={kind: conversation, num_sessions: " + str(sessions) + ", arrival: {kind: poisson, "
            "rate_per_s: 1.5}, mean_turns: 6, mean_think_time_s: 30, shared_prefixes: "
            "[{tokens: 2000, weight: 2}, {tokens: 800, weight: 1}, {tokens: 300, weight: 1}], "
            "message_tokens: {kind: lognormal, median_tokens: 150, sigma: 1.0, max_tokens: 4000}, "
            "output_tokens: {kind: lognormal, median_tokens: 300, sigma: 0.7, max_tokens: 2000}, "
            "max_prompt_tokens: 30000}")


def run(args: tuple) -> dict:
    wl, cost, router, caching, duration_s, instances = args
    sc = load_scenario(None, [
        workload(wl, duration_s), "policy={kind: sarathi, max_num_batched_tokens: 8192}",
        COSTS[cost], "cluster.max_model_len=65536", f"cluster.num_instances={instances}",
        f"cluster.router={router}", *CACHING[caching], "slo={ttft_s: 5.0, tpot_s: 0.1}"])
    s = simulate(sc).summary
    pc = s.get("prefix_cache", {})
    return {"workload": wl, "cost model": cost, "router": router, "caching": caching,
            "hit rate": pc.get("hit_rate", 0.0), "of which host": pc.get("host_hit_rate", 0.0),
            "of which disk": pc.get("disk_hit_rate", 0.0),
            "TTFT mean s": s["ttft_s"]["mean"], "TTFT p90 s": s["ttft_s"]["p90"],
            "attainment": s["slo_attainment"]["both"],
            "served req/s": s["throughput"]["requests_per_s"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration-s", type=float, default=600.0)
    ap.add_argument("--instances", type=int, default=4)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--caching", nargs="+", choices=list(CACHING), default=list(CACHING))
    ap.add_argument("--routers", nargs="+", choices=ROUTERS, default=list(ROUTERS))
    a = ap.parse_args()
    grid = [(w, c, r, p, a.duration_s, a.instances) for w, c, r, p in itertools.product(
        ("mooncake", "synthetic"), COSTS, a.routers, a.caching)]
    with Pool(a.jobs) as pool:
        rows = pool.map(run, grid)
    print(records_table(rows))


if __name__ == "__main__":
    main()
