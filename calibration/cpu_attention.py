"""Decode attention on the host CPU (torch on CPU), for OmniServe-style attention offload:
one layer's attention for a batch of single-token queries over their KV, per thread count and
dtype, over context lengths. Heads are the model's (per GPU of its TP group).

    python -m calibration.cpu_attention --model yi-34b --tp 2 --out llmsim/profiles/h100/yi-34b
"""
from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from calibration.common import make_env, model_spec, script_main, write_csv


def run(model: str, tp: int, out: Path, smoke: bool) -> list[Path]:
    env = make_env(smoke)
    spec = model_spec(model, env)
    nh, nkv, hd = max(1, spec.num_heads // tp), max(1, spec.num_kv_heads // tp), spec.head_dim
    cores = os.cpu_count() or 1
    threads = [1, 2] if smoke else sorted({1, 4, 8, min(16, cores), cores})
    ctxs = [64, 128] if smoke else [256, 1024, 4096, 16384]
    batches = [1, 2] if smoke else [1, 4, 16]
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        for th in threads:
            torch.set_num_threads(th)
            for b in batches:
                for c in ctxs:
                    q = torch.randn(b, nh, 1, hd).to(dtype)
                    k, v = torch.randn(b, nkv, c, hd).to(dtype), torch.randn(b, nkv, c, hd).to(dtype)
                    fn = lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=nh != nkv)  # noqa: E731
                    fn()
                    ts = []
                    for _ in range(3 if smoke else 7):
                        t0 = time.perf_counter()
                        fn()
                        ts.append(time.perf_counter() - t0)
                    rows.append((str(dtype).removeprefix("torch."), th, b, c, nkv, hd,
                                 statistics.median(ts)))
    torch.set_num_threads(cores)
    return [write_csv(out / "cpu_attention.csv", ["dtype", "threads", "batch", "ctx", "kv_heads",
                                                          "head_dim", "time_s"], rows)]


def main() -> None:
    script_main(__doc__, run)


if __name__ == "__main__":
    main()
