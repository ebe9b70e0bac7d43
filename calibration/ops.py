"""Operator microbenchmarks of one decoder layer (per GPU of a TP group), plus embedding and
LM head, over a log grid of token counts; attention prefill (q x kv) and decode (batch x ctx)
through torch's scaled-dot-product attention.

    python -m calibration.ops --model llama-3.1-8b --tp 1 --out llmsim/profiles/h100/llama-3.1-8b
    python -m calibration.ops --model llama-3.1-8b --smoke --out /tmp/smoke     # CPU, tiny dims
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from calibration.common import (
    Env,
    engine_sdpa,
    is_opt,
    log_grid,
    make_env,
    model_spec,
    randn,
    script_main,
    time_fn,
    write_csv,
)


def _shard(spec, tp: int) -> dict:
    return dict(h=spec.hidden_size, hd=spec.head_dim, nh=max(1, spec.num_heads // tp),
                nkv=max(1, spec.num_kv_heads // tp), inter=max(1, spec.intermediate_size // tp),
                vocab=spec.vocab_size // tp if spec.vocab_size % tp == 0 else spec.vocab_size)


def linear_rows(spec, tp: int, env: Env, max_tokens: int) -> list[tuple]:
    """The layer's GEMMs as transformers runs them: Llama-family linears without bias
    (QKV priced as one GEMM); OPT's q, k and v as three biased projections, every other linear
    biased too (its bias add rides in the GEMM's epilogue, its separate q/k/v do not fuse)."""
    d = _shard(spec, tp)
    h, hd = d["h"], d["hd"]
    opt = is_opt(spec)
    up = (2 if spec.gated_mlp else 1) * d["inter"]
    qkv = [(h, d["nh"] * hd), (h, d["nkv"] * hd), (h, d["nkv"] * hd)] if opt else \
        [(h, (d["nh"] + 2 * d["nkv"]) * hd)]
    weights = {"qkv": qkv, "o": [(d["nh"] * hd, h)], "gate_up": [(h, up)],
               "down": [(d["inter"], h)], "lm_head": [(h, d["vocab"])]}
    rows = []
    grid = log_grid(1, max_tokens)
    for op, shapes in weights.items():
        ws = [randn(n, k, env=env) for k, n in shapes]
        bs = [randn(n, env=env) if opt and op != "lm_head" else None for _, n in shapes]
        for t in grid:
            if op == "lm_head" and t > 4096:  # logits only for sampled rows
                continue
            x = randn(t, shapes[0][0], env=env, scale=1.0)
            rows.append((tp, op, t, time_fn(
                lambda: [F.linear(x, w, b) for w, b in zip(ws, bs)], env)))  # noqa: F821 (called before the del)
        del ws, bs
    return rows


def elementwise_rows(spec, tp: int, env: Env, max_tokens: int) -> list[tuple]:
    """Per layer, outside the matmuls and attention: two norms, rotary embedding on q and k, the
    MLP activation and two residual adds, as transformers runs them (Llama-family RMSNorm in
    fp32; OPT: LayerNorm in the model dtype and no rotary). Plus token embedding."""
    opt = is_opt(spec)
    d = _shard(spec, tp)
    h, hd, nh, nkv = d["h"], d["hd"], d["nh"], d["nkv"]
    inter = d["inter"]
    gamma = randn(h, env=env, scale=1.0)
    emb = randn(spec.vocab_size // tp if spec.vocab_size % tp == 0 else spec.vocab_size, h, env=env)
    rows = []
    for t in log_grid(1, max_tokens):
        x, res = randn(t, h, env=env, scale=1.0), randn(t, h, env=env, scale=1.0)
        q, k = randn(t, nh, hd, env=env, scale=1.0), randn(t, nkv, hd, env=env, scale=1.0)
        cos, sin = randn(t, 1, hd, env=env, scale=1.0), randn(t, 1, hd, env=env, scale=1.0)
        g = randn(t, (2 if spec.gated_mlp else 1) * inter, env=env, scale=1.0)
        ids = torch.randint(0, emb.shape[0], (t,), device=env.device)

        def layer():
            for _ in range(2):  # input and post-attention norms
                if opt:
                    F.layer_norm(x, (h,), gamma, gamma)
                    continue
                v = x.float()
                (v * torch.rsqrt(v.pow(2).mean(-1, keepdim=True) + 1e-6)).to(x.dtype) * gamma
            for z in (() if opt else (q, k)):  # rotate-half rotary embedding
                a, b = z.chunk(2, dim=-1)
                z * cos + torch.cat((-b, a), dim=-1) * sin
            if spec.gated_mlp:
                a, b = g.chunk(2, dim=-1)
                F.silu(a) * b
            else:
                F.relu(g)
            x + res
            x + res

        rows.append((tp, "elementwise", t, time_fn(layer, env)))
        rows.append((tp, "embed", t, time_fn(lambda: F.embedding(ids, emb), env)))
    return rows


def attention_prefill_rows(spec, tp: int, env: Env, max_tokens: int, max_kv: int) -> list[tuple]:
    d = _shard(spec, tp)
    rows = []
    qs = [q for q in (16, 64, 256, 512, 1024, 2048, 4096, 8192, 16384) if q <= max_tokens]
    for q_len in qs:
        # a log grid in context, two points per octave: flash picks its KV-split per shape, so a
        # chunk's time is not linear in context between sparse points (measured on H100: a
        # 64-token chunk over 4,096 tokens took 61 µs, over 8,192 tokens 46 µs)
        for ctx in [0] + log_grid(256, 16384):
            kv_len = q_len + ctx
            if kv_len > max_kv:
                continue
            q = randn(1, d["nh"], q_len, d["hd"], env=env, scale=1.0)
            k = randn(1, d["nkv"], kv_len, d["hd"], env=env, scale=1.0)
            v = randn(1, d["nkv"], kv_len, d["hd"], env=env, scale=1.0)
            rows.append((tp, q_len, kv_len, time_fn(lambda: engine_sdpa(q, k, v), env)))
    return rows


def attention_decode_rows(spec, tp: int, env: Env, max_ctx: int, max_bytes: float) -> list[tuple]:
    d = _shard(spec, tp)
    rows = []
    for b in (1, 2, 4, 8, 16, 32, 64, 128, 256):
        for ctx in log_grid(128, max_ctx, per_octave=1):
            kv_bytes = 2 * b * ctx * d["nkv"] * d["hd"] * (2 if env.is_cuda else 4)
            if kv_bytes > max_bytes:
                continue
            q = randn(b, d["nh"], 1, d["hd"], env=env, scale=1.0)
            k = randn(b, d["nkv"], ctx, d["hd"], env=env, scale=1.0)
            v = randn(b, d["nkv"], ctx, d["hd"], env=env, scale=1.0)
            rows.append((tp, b, ctx, time_fn(lambda: engine_sdpa(q, k, v), env)))  # noqa: F821 (called before the del)
            del q, k, v
    return rows


def attention_hf_rows(spec, tp: int, env: Env, max_ctx: int, max_bytes: float) -> list[tuple]:
    """Attention as transformers' eager engine runs it with a ``DynamicCache`` (the whole-model
    ground truth): the cache grows by ``torch.cat`` (a copy of all of the layer's KV every step),
    a decode (1 query token, no mask) calls SDPA with GQA, and a chunk over cached context builds
    a lower-right causal mask, which makes HF repeat the KV heads and take a masked kernel."""
    d = _shard(spec, tp)
    nh, nkv, hd = d["nh"], d["nkv"], d["hd"]
    gqa = nh != nkv
    rows = []
    elem = 2 if env.is_cuda else 4

    def cat_kv(k_ctx, v_ctx, k_new, v_new):
        return torch.cat([k_ctx, k_new], dim=-2), torch.cat([v_ctx, v_new], dim=-2)

    for b in (1, 2, 4, 8, 16, 32, 64, 128, 256):
        for ctx in log_grid(128, max_ctx, per_octave=1):
            if 4 * b * ctx * nkv * hd * elem > max_bytes:  # the cache and its copy
                continue
            kc, vc = randn(b, nkv, ctx, hd, env=env, scale=1.0), randn(b, nkv, ctx, hd, env=env, scale=1.0)
            q, kn, vn = (randn(b, h, 1, hd, env=env, scale=1.0) for h in (nh, nkv, nkv))

            def decode():
                k, v = cat_kv(kc, vc, kn, vn)
                F.scaled_dot_product_attention(q, k, v, enable_gqa=gqa)

            rows.append((tp, "decode", b, 1, ctx, time_fn(decode, env)))
            del kc, vc
    for q_len in (16, 64, 256, 512, 1024, 2048, 4096):
        for ctx in (512, 2048, 8192):
            if env.smoke and (q_len > 64 or ctx > 512):
                continue
            kc, vc = randn(1, nkv, ctx, hd, env=env, scale=1.0), randn(1, nkv, ctx, hd, env=env, scale=1.0)
            q, kn, vn = (randn(1, h, q_len, hd, env=env, scale=1.0) for h in (nh, nkv, nkv))
            mask = torch.ones(q_len, ctx + q_len, dtype=torch.bool, device=env.device).tril(ctx)

            def chunk():
                k, v = cat_kv(kc, vc, kn, vn)
                if gqa:  # transformers' repeat_kv: GQA is only passed to SDPA without a mask
                    k = k.repeat_interleave(nh // nkv, dim=1)
                    v = v.repeat_interleave(nh // nkv, dim=1)
                F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

            rows.append((tp, "chunk", 1, q_len, ctx, time_fn(chunk, env)))
    return rows


PARTS = ("linear", "prefill", "decode", "hf")


def run(model: str, tps: list[int], out: Path, smoke: bool, graphs: bool = False,
        parts: tuple[str, ...] = PARTS) -> list[Path]:
    """``graphs``: time every operator as a CUDA-graph replay and write ``*_graph.csv`` (the
    profile of ``latency.engine: kernels``); transformers' eager attention ("hf") is then not
    measured. ``parts``: which files to (re-)measure, e.g. ``("prefill",)`` alone when its grid
    changes."""
    env = make_env(smoke, graphs)
    spec = model_spec(model, env)
    max_tokens = 64 if env.smoke else 16384
    max_kv = 256 if env.smoke else 32768
    max_ctx = 256 if env.smoke else 32768
    max_bytes = 1e6 if env.smoke else 6e9
    sfx = "_graph" if graphs else ""
    files = {  # part -> (file, header, rows of one TP degree)
        "linear": (f"ops{sfx}.csv", ["tp", "op", "num_tokens", "time_s"], lambda tp: (
            linear_rows(spec, tp, env, max_tokens) + elementwise_rows(spec, tp, env, max_tokens))),
        "prefill": (f"attn_prefill{sfx}.csv", ["tp", "q_tokens", "kv_tokens", "time_s"],
                    lambda tp: attention_prefill_rows(spec, tp, env, max_tokens, max_kv)),
        "decode": (f"attn_decode{sfx}.csv", ["tp", "batch", "ctx", "time_s"],
                   lambda tp: attention_decode_rows(spec, tp, env, max_ctx, max_bytes)),
        "hf": ("attn_hf.csv", ["tp", "kind", "batch", "q_tokens", "ctx", "time_s"],
               lambda tp: attention_hf_rows(spec, tp, env, 256 if env.smoke else 8192, max_bytes)),
    }
    paths = []
    for part in parts:
        if part == "hf" and graphs:
            continue
        name, header, measure = files[part]
        rows = []
        for tp in tps:
            rows += measure(tp)
            if env.is_cuda:
                torch.cuda.empty_cache()
        paths.append(write_csv(out / name, header, rows))
    return paths


def main() -> None:
    script_main(__doc__, run, tp_nargs="+")


if __name__ == "__main__":
    main()
