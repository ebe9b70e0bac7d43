"""BucketServe vs UELLM vs DistServe (and vLLM) on the BucketServe paper's scenarios.

    python benchmarks/bucketserve_compare.py [--workloads alpaca mixed] [--rates 1 2 4 8]
        [--gpu a100-40gb | --gpu h100 --profiled] [--requests 300] [--seeds 0 1]

For each workload and policy: SLO attainment and served request rate per offered Poisson rate,
the rate at 80% attainment (linear interpolation between the bracketing rates), offline
throughput (a closed batch of the same requests), padding ratio and per-phase GPU busy fraction.
Prints markdown tables. Everything runs on 4 GPUs: colocated 4 x TP1 for UELLM and vLLM,
2 prefill + 2 decode for DistServe and BucketServe (scenarios/bucketserve-*.yaml).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from llmsim.scenario import load_scenario
from llmsim.simulation import simulate

HERE = Path(__file__).resolve().parents[1] / "scenarios"

COLOCATED = ["cluster.topology=colocated", "cluster.num_instances=4", "cluster.prefill=null",
             "cluster.decode=null", "decode_policy=null"]
POLICIES = {
    "uellm": COLOCATED + ["policy={kind: uellm}"],
    "vllm": COLOCATED + ["policy={kind: vllm}"],
    "distserve": ["policy={kind: distserve_prefill}",
                  "decode_policy={kind: distserve_decode, waiting_block_prop_threshold: 0.05}"],
    "bucketserve": [],
}


def run(workload: str, policy: str, extra: list[str]):
    sc = load_scenario(HERE / f"bucketserve-{workload}.yaml", POLICIES[policy] + extra)
    return simulate(sc).summary


def rate_at(rates, attain, target=0.8) -> float:
    """Highest offered rate on the curve where attainment is still >= target (interpolated)."""
    best = float("nan")
    for (r0, a0), (r1, a1) in zip(zip(rates, attain), zip(rates[1:], attain[1:])):
        if a0 >= target > a1:
            return r0 + (a0 - target) / (a0 - a1) * (r1 - r0)
        if a1 >= target:
            best = r1
    return best if attain[0] >= target else 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workloads", nargs="+", default=["alpaca", "mixed", "longbench"])
    ap.add_argument("--rates", nargs="+", type=float, default=[1, 2, 4, 6, 8, 10, 12, 16])
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--gpu", default="a100-40gb")
    ap.add_argument("--profiled", action="store_true", help="measured profile, engine: kernels")
    a = ap.parse_args()
    base = [f"cluster.gpu={a.gpu}", f"workload.num_requests={a.requests}"]
    if a.profiled:
        base.append("latency={kind: profiled, engine: kernels}")
    for wl in a.workloads:
        print(f"\n### {wl} on 4 x {a.gpu}{' (profiled)' if a.profiled else ' (roofline)'}\n")
        print("| policy | " + " | ".join(f"{r:g}" for r in a.rates)
              + " | rate @80% | offline tok/s | padding | busy P/D |")
        print("|---" * (len(a.rates) + 5) + "|")
        for pol in POLICIES:
            attain, served = [], []
            for rate in a.rates:
                s = [run(wl, pol, base + [f"workload.arrival.rate_per_s={rate}", f"seed={seed}"])
                     for seed in a.seeds]
                attain.append(float(np.mean([x["slo_attainment"]["both"] for x in s])))
                served.append(float(np.mean([x["throughput"]["requests_per_s"] for x in s])))
            off = run(wl, pol, base + ["workload.arrival={kind: closed}"])
            busy = off.get("gpu_busy_fraction_by_role", {})
            busy_s = "/".join(f"{100 * busy[k]:.0f}%" for k in ("prefill", "decode") if k in busy) \
                or f"{100 * off['gpu_busy_fraction']:.0f}%"
            cells = " | ".join(f"{100 * x:.0f}% ({y:.1f})" for x, y in zip(attain, served))
            print(f"| {pol} | {cells} | {rate_at(a.rates, attain):.2f} | "
                  f"{off['throughput']['output_tokens_per_s']:.0f} | {100 * off['padding_ratio']:.1f}% | {busy_s} |")
        print("\ncells: SLO attainment (both TTFT and TPOT) at the offered rate (served req/s)")


if __name__ == "__main__":
    main()
