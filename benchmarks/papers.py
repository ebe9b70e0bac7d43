"""The seed papers' headline experiments (scenarios/papers/), tabulated next to their claims.

    python benchmarks/papers.py
"""
from __future__ import annotations

import sys
from pathlib import Path

from llmsim.scenario import load_scenario
from llmsim.simulation import simulate

PAPERS = Path(__file__).resolve().parents[1] / "scenarios" / "papers"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from paper_verdicts import distserve_goodputs  # noqa: E402


def uellm() -> None:
    print("## UELLM closed batch (100 queries, ChatGLM2-6B, 1 x H100, measured eager engine)\n")
    print("| variant | makespan s | SLO violation rate | padding | paper (5 runs) |")
    print("|---|---:|---:|---:|---|")
    paper = {"slo_odbs": "UELLM-batch 193-312 s / 0.01-0.25; UELLM-all (with HELR) 62-72 s / 0",
             "odbs": "-", "slo_dbs": "-", "fcfs": "naive groups of 10 (Morphling-like): 225-438 s / 0.21-0.52"}
    for sort in ("slo_odbs", "odbs", "slo_dbs", "fcfs"):
        s = simulate(load_scenario(PAPERS / "uellm-closed-batch.yaml", [f"policy.sort={sort}"])).summary
        print(f"| {sort} | {s['makespan_s']:.1f} | {1 - s['slo_attainment']['deadline']:.2f} | "
              f"{s['padding_ratio']:.2f} | {paper[sort]} |")


def distserve() -> None:
    print("\n## DistServe chatbot (OPT-13B, ShareGPT, TTFT 0.25 s / TPOT 0.1 s, 90% target)\n")
    d, v = distserve_goodputs()
    print("| system | GPUs | goodput req/s | per GPU |")
    print("|---|---:|---:|---:|")
    for name, g in (("DistServe P TP2 + D TP1", d), ("vLLM TP1", v)):
        print(f"| {name} | {g['num_gpus']} | {g['rate_per_s']:.2f} | {g['per_gpu_rate_per_s']:.2f} |")
    print(f"\nper-GPU goodput ratio DistServe / vLLM: {d['per_gpu_rate_per_s'] / v['per_gpu_rate_per_s']:.2f}x")


if __name__ == "__main__":
    uellm()
    distserve()
