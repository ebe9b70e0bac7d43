"""Tensor-parallel all-reduce latency over message sizes (NCCL, one process per GPU), used to
cost TP layers. Run on a machine with 2, 4 (or 8) GPUs; ``--smoke`` runs gloo on CPU processes.

    python -m calibration.collectives --world-size 4 --out llmsim/profiles/h200/_collectives
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from calibration.common import write_csv

NVLS_OFF = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
            "NVSHMEM_DISABLE_NVLS": "1"}  # NVLink multicast stays off (shared hosts)


def _worker(rank: int, world: int, smoke: bool, port: int, q) -> None:
    os.environ.update(NVLS_OFF, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    backend = "gloo" if smoke else "nccl"
    dist.init_process_group(backend, rank=rank, world_size=world)
    dev = torch.device("cpu") if smoke else torch.device("cuda", rank)
    if not smoke:
        torch.cuda.set_device(dev)
    dtype = torch.float32 if smoke else torch.bfloat16
    sizes = [2**p for p in (range(10, 16) if smoke else range(10, 29))]
    rows = []
    for n in sizes:
        x = torch.randn(max(1, n // (4 if smoke else 2)), device=dev).to(dtype)
        for _ in range(5):
            dist.all_reduce(x)
        reps = 3 if smoke else 30
        ts = []
        for _ in range(reps):
            dist.barrier()
            if smoke:
                t0 = time.perf_counter()
                dist.all_reduce(x)
                ts.append(time.perf_counter() - t0)
            else:
                s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                s.record()
                dist.all_reduce(x)
                e.record()
                e.synchronize()
                ts.append(s.elapsed_time(e) / 1e3)
        med = torch.tensor([statistics.median(ts)], device=dev, dtype=torch.float64)
        dist.all_reduce(med, op=dist.ReduceOp.MAX)  # the slowest rank sets the step time
        rows.append((world, n, float(med.item())))
    if rank == 0:
        q.put(rows)
    dist.destroy_process_group()


def run(world: int, out: Path, smoke: bool, port: int = 29533) -> list[Path]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(r, world, smoke, port, q)) for r in range(world)]
    for p in procs:
        p.start()
    rows = q.get(timeout=600)
    for p in procs:
        p.join()
    return [write_csv(out / f"allreduce_tp{world}.csv", ["world_size", "bytes", "time_s"], rows)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world-size", type=int, nargs="+", default=[2])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args()
    for w in a.world_size:
        for p in run(w, a.out, a.smoke, port=29533 + w):
            print("wrote", p)


if __name__ == "__main__":
    main()
