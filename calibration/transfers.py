"""Copy bandwidths: host<->device over pinned memory (swap, CPU offload) and device<->device
(same GPU, and GPU-to-GPU peer copies when several GPUs are visible: KV transfer for P/D).

    python -m calibration.transfers --out llmsim/profiles/h100/_machine
"""
from __future__ import annotations

from pathlib import Path

import torch

from calibration.common import make_env, randn, script_main, time_fn, write_csv


def run(out: Path, smoke: bool) -> list[Path]:
    env = make_env(smoke)
    sizes = [2**p for p in (range(12, 18) if env.smoke else range(12, 31, 2))]
    rows = []
    for n in sizes:
        elems = n // 2
        if env.is_cuda:
            host = torch.randn(elems, dtype=torch.float32).to(torch.bfloat16).pin_memory()
            dev = randn(elems, env=env, scale=1.0)
            dev2 = torch.empty_like(dev)
            rows.append(("h2d", n, time_fn(lambda: dev.copy_(host, non_blocking=True), env)))
            rows.append(("d2h", n, time_fn(lambda: host.copy_(dev, non_blocking=True), env)))
            rows.append(("d2d", n, time_fn(lambda: dev2.copy_(dev), env)))
            if torch.cuda.device_count() > 1:
                peer = torch.empty(elems, dtype=dev.dtype, device="cuda:1")
                rows.append(("gpu0_to_gpu1", n, time_fn(lambda: peer.copy_(dev, non_blocking=True), env)))
        else:
            a = torch.randn(elems)
            b = torch.empty_like(a)
            rows.append(("host_copy", n, time_fn(lambda: b.copy_(a), env)))
    return [write_csv(out / "transfers.csv", ["kind", "bytes", "time_s"], rows)]


def main() -> None:
    script_main(__doc__, run, model=False)


if __name__ == "__main__":
    main()
