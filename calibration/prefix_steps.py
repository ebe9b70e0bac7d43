"""Prefill with k of n prompt tokens already cached (a prefix-cache hit), and the kernel that
prices a chunk over cached context (``chunk_attention``), on one GPU with random weights.

- ``prefix_attention.csv``: attention alone, q new tokens over c cached ones, per kernel;
- ``prefix_steps.csv``: whole-model steps of an n-token prompt with k tokens cached (q = n - k
  new tokens over c = k), as a CUDA-graph engine runs them (``graph_steps.make_step``), per kernel;
- ``chunk_alignment.json``: each kernel's max error against a float32 lower-right reference.

    python -m calibration.prefix_steps --model llama-3.1-8b --out "$OUT/h200/llama-3.1-8b"
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from calibration import chunk_attention, graph_steps
from calibration.common import (
    Env,
    make_env,
    model_main,
    model_spec,
    randn,
    time_fn,
    write_csv,
)
from calibration.ops import _shard
from calibration.whole_model import build_model, layers_that_fit


def usable_kernels(align: dict) -> list[str]:
    """Kernels that compute lower-right causal attention (error at bf16 rounding)."""
    return [k for k in chunk_attention.KERNELS
            if isinstance(align.get(k), float) and align[k] < 0.05]


def attention_rows(spec, env: Env, kernels: list[str]) -> list[tuple]:
    d = _shard(spec, 1)
    qs = (16, 64) if env.smoke else (16, 64, 256, 512, 1024, 2048, 4096, 8192)
    cs = (32,) if env.smoke else (256, 1024, 4096, 16384)
    rows = []
    for q_len in qs:
        for ctx in cs:
            q = randn(1, d["nh"], q_len, d["hd"], env=env, scale=1.0)
            k, v = (randn(1, d["nkv"], ctx + q_len, d["hd"], env=env, scale=1.0) for _ in range(2))
            for kern in kernels:
                t = time_fn(lambda: chunk_attention.chunk(q, k, v, kernel=kern), env)  # noqa: B023
                rows.append((kern, q_len, ctx, t))
            # what the chunk would cost if the context were free: causal over the chunk alone
            rows.append(("causal_chunk_only", q_len, ctx, time_fn(
                lambda: torch.nn.functional.scaled_dot_product_attention(  # noqa: B023
                    q, k[..., :q_len, :], v[..., :q_len, :], is_causal=True,  # noqa: B023
                    enable_gqa=d["nh"] != d["nkv"]), env)))
    return rows


def step_grid(env: Env) -> list[tuple[int, int]]:
    """(n prompt tokens, k cached): cached shares 0 .. 15/16 at three prompt lengths."""
    ns = (64,) if env.smoke else (1024, 4096, 8192)
    out = []
    for n in ns:
        for share in (0.0, 0.25, 0.5, 0.75, 0.9375):
            out.append((n, int(n * share)))
    return out


@torch.inference_mode()
def run(model: str, out: Path, smoke: bool) -> list[Path]:
    env = make_env(smoke)
    spec = model_spec(model, env)
    align = chunk_attention.alignment(env.device, env.dtype)
    kernels = usable_kernels(align)
    print("chunk kernels:", align, flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "chunk_alignment.json").write_text(json.dumps(align, indent=2) + "\n")
    paths = [write_csv(out / "prefix_attention.csv", ["kernel", "q_tokens", "ctx_tokens", "time_s"],
                       attention_rows(spec, env, kernels))]
    n_layers = layers_that_fit(spec, env)
    graph_steps.register_attention()
    cfg, lm = build_model(spec, env, n_layers, graph_steps.ATTENTION)
    rows = []
    for n, k in step_grid(env):
        for kern in kernels if k else ["none"]:
            if k:
                chunk_attention.use(kern)
            phase = "mixed" if k else "prefill"
            step = graph_steps.make_step(lm, cfg, env, spec.vocab_size, phase, 1, n - k, k)
            if env.is_cuda:
                t, method = graph_steps.graph_time_s(step, env), "cuda_graph"
            else:
                t, method = time_fn(step, env), "cpu"
            rows.append((kern, n, k, n - k, n_layers, t, method))
            print(f"n={n} k={k} {kern}: {t * 1e3:.3f} ms", flush=True)
            step = None
            if env.is_cuda:
                torch.cuda.empty_cache()
    chunk_attention.use("masked")
    (out / "chunk_alignment.json").write_text(json.dumps({**align, **chunk_attention.NOTES},
                                                         indent=2) + "\n")
    paths.append(write_csv(out / "prefix_steps.csv", ["kernel", "prompt_tokens", "cached_tokens",
                                                      "new_tokens", "num_layers", "time_s",
                                                      "method"], rows))
    return paths


def main() -> None:
    model_main(__doc__, run, provenance_name="prefix")


if __name__ == "__main__":
    main()
