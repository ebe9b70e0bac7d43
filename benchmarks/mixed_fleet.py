"""When does a mixed GPU fleet win? DistServe-style disaggregation of Llama-3.1-8B, 2 prefill + 2
decode instances (TP 1), every split of H100 and H200 between the phases, on chat lengths
(TTFT 1 s / TPOT 50 ms) and long documents with long answers (4K / 1K tokens, TTFT 5 s / TPOT
50 ms): goodput (the highest Poisson rate holding 90% SLO attainment, bisected to 3%), the fleet's
price per hour, goodput per dollar, and $ and J per 1M output tokens at 90% of each fleet's
goodput, over arrival windows of 60 s (chat) and 300 s (long). Scenario:
scenarios/mixed-fleet-disagg.yaml (KV moved over 400 Gb/s between the sides).

Then colocated fleets of four GPUs (scenarios/mixed-fleet-colocated.yaml: vLLM, 1K-token
prompts, 600-token answers, TTFT 1 s / TPOT 40 ms): all-H100, 2 + 2, all-H200, each routed by
least_outstanding and by least_work (outstanding requests over each instance's speed).

    python benchmarks/mixed_fleet.py [--seeds 2] [--part disagg|colocated]
"""
from __future__ import annotations

import argparse
from multiprocessing import Pool
from pathlib import Path

from md_table import records_table

from llmsim.analysis.goodput import goodput
from llmsim.scenario import load_scenario
from llmsim.simulation import simulate

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "mixed-fleet-disagg.yaml"
SPLITS = [("h100", "h100"), ("h200", "h200"), ("h100", "h200"), ("h200", "h100")]
WINDOW_S = {"chat": 60.0, "long": 300.0}  # a long answer takes ~50 s: the window must hold many
WORKLOADS = {  # the scenario's chat lengths, and long documents with long answers
    "chat": [],
    "long": ["workload.prompt_tokens={kind: lognormal, median_tokens: 4000, sigma: 0.6, "
             "max_tokens: 12000}",
             "workload.output_tokens={kind: lognormal, median_tokens: 1000, sigma: 0.5, "
             "max_tokens: 3000}", "cluster.max_model_len=16384", "slo.ttft_s=5.0",
             "policy.max_num_batched_tokens=16384"],
}


def at_90_percent(path: Path, base: list[str], seeds: int, hi: float,
                  window_s: float) -> tuple[float, dict, float]:
    """(goodput at 90% attainment, the summary of a run at 90% of it, the fleet's $/h)."""
    g = goodput(load_scenario(path, base), 0.9, seeds=tuple(range(seeds)), hi=hi, tol=0.03,
                window_s=window_s)["rate_per_s"]
    rate = 0.9 * g
    s = simulate(load_scenario(path, [*base, f"workload.arrival.rate_per_s={rate}",
                                      f"workload.num_requests={int(rate * window_s)}"])).summary
    return g, s, s["cost"]["usd"] / s["makespan_s"] * 3600


def run(args: tuple) -> dict:
    wl, (p, d), seeds = args
    base = [f"cluster.prefill.gpu={p}", f"cluster.decode.gpu={d}", *WORKLOADS[wl]]
    g, s, usd_per_h = at_90_percent(SCENARIO, base, seeds, 8.0, WINDOW_S[wl])
    return {"workload": wl, "prefill": p, "decode": d, "goodput req/s": g,
            "fleet $/h": usd_per_h, "goodput req per $": g * 3600 / usd_per_h,
            "$ per 1M output tokens": s["cost"]["usd_per_million_output_tokens"],
            "J per output token": s["energy"]["j_per_output_token"],
            "attainment at 90% of goodput": s["slo_attainment"]["both"]}


COLOCATED = Path(__file__).resolve().parents[1] / "scenarios" / "mixed-fleet-colocated.yaml"
FLEETS = {"4 h100": [("h100", 4)], "2 h100 + 2 h200": [("h100", 2), ("h200", 2)],
          "4 h200": [("h200", 4)]}


def run_colocated(args: tuple) -> dict:
    fleet, router, seeds = args
    groups = [{"num_instances": n, "gpu": g} for g, n in FLEETS[fleet]]
    base = [f"cluster.groups={groups}", f"cluster.router={router}"]
    g, s, usd_per_h = at_90_percent(COLOCATED, base, seeds, 16.0, 120.0)
    return {"fleet": fleet, "router": router, "goodput req/s": g,
            "fleet $/h": usd_per_h, "goodput req per $": g * 3600 / usd_per_h,
            "TTFT p90 s at 90% of goodput": s["ttft_s"]["p90"],
            "J per output token": s["energy"]["j_per_output_token"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--part", choices=("disagg", "colocated"), action="append")
    a = ap.parse_args()
    parts = a.part or ["disagg", "colocated"]
    with Pool(a.jobs) as pool:
        if "disagg" in parts:
            rows = pool.map(run, [(w, s, a.seeds) for w in WORKLOADS for s in SPLITS])
            print(records_table(rows))
        if "colocated" in parts:
            rows = pool.map(run_colocated, [(f, r, a.seeds) for f in FLEETS
                                            for r in ("least_outstanding", "least_work")])
            print(records_table(rows))


if __name__ == "__main__":
    main()
