"""Shared helpers for the microbenchmarks: devices, timing, model dims, provenance, CSV output."""
from __future__ import annotations

import csv
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
CATALOG = REPO / "llmsim" / "models" / "catalog.yaml"  # the simulator's own model dims


@dataclass(frozen=True)
class ModelSpec:
    """The catalog's architecture dims (read directly: the GPU machines lack pydantic)."""

    name: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    max_model_len: int
    gated_mlp: bool = True
    tied_embeddings: bool = False
    dtype_bytes: int = 2

    @property
    def params_per_layer(self) -> int:
        h, q, kv = self.hidden_size, self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        return h * q + 2 * h * kv + q * h + (3 if self.gated_mlp else 2) * h * self.intermediate_size

    def model_copy(self, update: dict) -> ModelSpec:
        return replace(self, **update)


def resolve_model(name: str) -> ModelSpec:
    models = yaml.safe_load(CATALOG.read_text())["models"]
    return ModelSpec(name=name, **models[name])


@dataclass(frozen=True)
class Env:
    device: torch.device
    dtype: torch.dtype
    smoke: bool  # CPU smoke mode: tiny dims, few repeats; proves the script runs
    graphs: bool = False  # time each call as a CUDA-graph replay (no launch gaps)

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"


def make_env(smoke: bool, graphs: bool = False) -> Env:
    if smoke or not torch.cuda.is_available():
        return Env(torch.device("cpu"), torch.float32, True)
    return Env(torch.device("cuda"), torch.bfloat16, False, graphs)


def as_graph(fn):
    """``fn`` captured once in a CUDA graph (after warm-up on a side stream); returns the
    replay. A multi-kernel call timed eagerly carries the host's launch gaps between its
    kernels; a CUDA-graph engine does not pay them."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay  # the bound method keeps the graph (and its memory pool) alive


def is_opt(spec: ModelSpec) -> bool:
    """The one LayerNorm / learned-position / biased-linear family among the profiled models."""
    return spec.name.startswith("opt")


def engine_sdpa(q, k, v, scale: float | None = None):
    """Attention as an efficient (flash/paged) engine runs it, for unpadded rows: no
    materialised mask, GQA inside the kernel; a decode query attends to everything, a prefill is
    causal, a chunk over cached context is causal at the lower right (by the kernel
    ``chunk_attention.use`` chose; the committed profiles used ``masked``). The operator
    profiles and the graph-replayed whole-model steps both call this, so they time the same
    kernels."""
    import torch.nn.functional as F

    from calibration import chunk_attention

    q_len, kv_len = q.shape[-2], k.shape[-2]
    gqa = q.shape[-3] != k.shape[-3]
    if q_len == 1:
        return F.scaled_dot_product_attention(q, k, v, scale=scale, enable_gqa=gqa)
    if q_len == kv_len:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale, enable_gqa=gqa)
    return chunk_attention.chunk(q, k, v, scale=scale)


def smoke_model(spec: ModelSpec) -> ModelSpec:
    """A scaled-down copy with the same shape ratios, for the CPU smoke mode."""
    heads = max(2, spec.num_heads // 8)
    kv = max(1, min(heads, spec.num_kv_heads * heads // spec.num_heads))
    while heads % kv:
        kv -= 1
    return spec.model_copy(update=dict(num_layers=2, hidden_size=heads * 16, num_heads=heads,
                                       num_kv_heads=kv, head_dim=16, intermediate_size=heads * 40,
                                       vocab_size=512, max_model_len=512))


def model_spec(name: str, env: Env) -> ModelSpec:
    spec = resolve_model(name)
    return smoke_model(spec) if env.smoke else spec


def randn(*shape, env: Env, scale: float = 0.02) -> torch.Tensor:
    """Random (never all-zero) inputs: zeros can run faster and hide unwritten outputs."""
    return (torch.randn(*shape, device=env.device, dtype=torch.float32) * scale).to(env.dtype)


def time_fn(fn, env: Env, min_reps: int = 5) -> float:
    """Median seconds of ``fn`` after warm-up: CUDA events via triton's do_bench on a GPU
    (it also flushes L2 between reps, so weights come from HBM as in a real step)."""
    if env.is_cuda:
        import triton.testing

        if env.graphs:
            fn = as_graph(fn)
        ms = triton.testing.do_bench(fn, warmup=5, rep=20, return_mode="median")
        return ms / 1e3
    fn()
    samples = []
    for _ in range(2 if env.smoke else min_reps):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def time_calls(fn, env: Env, reps: int = 9, warmup: int = 3) -> float:
    """Median seconds of ``reps`` individually timed calls (CUDA events, synchronised each
    time). For whole-model steps, where a fixed time budget would give one or two noisy reps."""
    if not env.is_cuda:
        return time_fn(fn, env)
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    samples = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) / 1e3)
    return statistics.median(samples)


def log_grid(lo: int, hi: int, per_octave: int = 2) -> list[int]:
    vals, x = set(), float(lo)
    while x <= hi * 1.0001:
        vals.add(int(round(x)))
        x *= 2 ** (1 / per_octave)
    vals.add(hi)
    return sorted(vals)


def write_csv(path: Path, header: list[str], rows: list[tuple]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in rows:
            w.writerow([f"{v:.6e}" if isinstance(v, float) else v for v in r])
    return path


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip() or "unknown"
    except Exception:
        return "unknown"


def provenance(env: Env, command: str, extra: dict | None = None) -> dict:
    info = {
        "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "project_commit": os.environ.get("LLMSIM_COMMIT") or _git_commit(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "host": platform.node(),
        "smoke": env.smoke,
    }
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        info["transformers"] = None
    if env.is_cuda:
        props = torch.cuda.get_device_properties(0)
        info.update(gpu_name=props.name, gpu_memory_bytes=props.total_memory,
                    gpu_count=torch.cuda.device_count(), cuda=torch.version.cuda,
                    num_sms=props.multi_processor_count)
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20).stdout
            info["driver"] = out.strip().splitlines()[0]
        except Exception:
            info["driver"] = "unknown"
    info.update(extra or {})
    return info


def write_provenance(path: Path, info: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")


def script_main(doc: str, run, *, model: bool = True, tp_nargs: str | None = None) -> None:
    """The shared command line of the microbenchmark scripts: parse, run, list what was written."""
    import argparse

    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    if model:
        ap.add_argument("--model", required=True)
        ap.add_argument("--tp", type=int, nargs=tp_nargs, default=[1] if tp_nargs else 1)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args()
    args = (a.model, a.tp, a.out, a.smoke) if model else (a.out, a.smoke)
    for p in run(*args):
        print("wrote", p)


def model_main(doc: str, run, *, option: tuple[str, type, object, str] | None = None,
               provenance_name: str | None = None) -> None:
    """The command line of a whole-model script: ``--model``, ``--out``, ``--smoke`` and at most
    one more ``option`` (flag, type, default, help), handed to ``run`` last; lists what was
    written and, with ``provenance_name``, writes ``provenance_<name>.json`` beside it."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--smoke", action="store_true")
    if option is not None:
        flag, kind, default, text = option
        ap.add_argument(flag, type=kind, default=default, help=text)
    a = ap.parse_args()
    extra = (getattr(a, option[0].lstrip("-").replace("-", "_")),) if option else ()
    for p in run(a.model, a.out, a.smoke, *extra):
        print("wrote", p)
    if provenance_name:
        command = f"python -m calibration.{Path(sys.argv[0]).stem} " + " ".join(sys.argv[1:])
        write_provenance(a.out / f"provenance_{provenance_name}.json",
                         provenance(make_env(a.smoke), command, {"model": a.model}))


def read_trace(path: Path, limit: int | None = None) -> list[dict]:
    """A trace in llmsim's CSV format (arrival, prompt and output tokens, and the optional
    prefix-block ids), its first ``limit`` rows: the real-engine harnesses replay the same
    files the simulator reads."""
    with path.open() as f:
        rows = [dict(arrival_s=float(r["arrival_s"]), prompt_tokens=int(r["prompt_tokens"]),
                     output_tokens=int(r["output_tokens"]),
                     prefix_ids=[int(x) for x in (r.get("prefix_ids") or "").split()],
                     prefix_block_tokens=int(r.get("prefix_block_tokens") or 0))
                for r in csv.DictReader(f)]
    return rows[:limit] if limit else rows


def prompt_with_prefix(row: dict, vocab: int, gen: torch.Generator) -> list[int]:
    """A prompt whose leading blocks are the tokens its prefix-block ids name (each id always
    gives the same tokens, so equal ids are an equal prefix the engine can share), then random."""
    ids: list[int] = []
    for h in row.get("prefix_ids", []):
        # seeded from the whole 64-bit id: torch's generator keeps only a seed's low 32 bits, so
        # ids that differ above them (namespaced groups) would name the same tokens
        rng = np.random.default_rng(h % (1 << 64))
        ids += rng.integers(3, vocab, row["prefix_block_tokens"]).tolist()
    ids = ids[:row["prompt_tokens"]]
    return ids + random_prompt(row["prompt_tokens"] - len(ids), vocab, gen)


def random_prompt(n: int, vocab: int, gen: torch.Generator) -> list[int]:
    # random ids (never all the same token): attention must see varied keys
    return torch.randint(3, vocab, (n,), generator=gen).tolist()
