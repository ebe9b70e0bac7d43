"""The shape-cost workload: one request at a time, each prompt a query size the engine has not
seen, then every size again in reverse order. Two passes of the same shapes split a step's cost
into what a new shape pays once (a CUDA-graph capture in graph mode, attention plan builds in
eager mode) and what every step pays: the first-pass step minus the second-pass step of one size.

Sizes sit mid-bucket of the graph engine's 64-token query padding, log-spaced over its whole
8,192-token budget; arrivals are far enough apart that each prefill runs alone.

    python -m calibration.capture_workload --out calibration/engine_grid/workloads/capture_sizes.csv
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

PAD = 64


def sizes(num: int = 24, low: int = 100, high: int = 8000) -> list[int]:
    out: list[int] = []
    for i in range(num):
        x = math.exp(math.log(low) + (math.log(high) - math.log(low)) * i / (num - 1))
        s = PAD * math.ceil(x / PAD) - PAD // 3  # mid-bucket: one padded size per prompt
        if not out or s > out[-1]:
            out.append(s)
    return out


def rows(spacing_s: float = 1.2, output_tokens: int = 4) -> list[tuple[float, int, int]]:
    order = sizes() + sizes()[::-1]
    return [(round(i * spacing_s, 6), p, output_tokens) for i, p in enumerate(order)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    lines = ["arrival_s,prompt_tokens,output_tokens"]
    lines += [f"{t:.6f},{p},{o}" for t, p, o in rows()]
    a.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
