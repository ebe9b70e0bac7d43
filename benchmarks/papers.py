"""The seed papers' headline experiments (scenarios/papers/), tabulated next to their claims.

    python benchmarks/papers.py
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import uellm_closed_batch  # noqa: E402
from md_table import markdown_table  # noqa: E402
from paper_verdicts import distserve_goodputs  # noqa: E402


def uellm() -> None:
    print("## UELLM closed batch (100 queries, ChatGLM2-6B, 1 x H100, measured eager engine;")
    print("## mean of eight served runs; paper: its repository's 5-run logs)\n")
    rows = uellm_closed_batch.table()
    cols = list(dict.fromkeys(k for r in rows for k in r))
    print(markdown_table(cols, [[r.get(c) for c in cols] for r in rows]))


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
