"""Whole-model steps of a real transformers model with random weights (built from its config, no
download): prefill-only, decode-only and chunked-prefill-over-context ("mixed") steps over a
grid. These are the ground truth the operator composition is checked against; every third shape
is marked ``heldout`` and never used in fitting. Also measures memory: weight bytes, peak
activation per batched token, KV bytes per token and the allocator/context reserve.

    python -m calibration.whole_model --model llama-3.1-8b --out llmsim/profiles/h100/llama-3.1-8b
"""
from __future__ import annotations

import statistics
from pathlib import Path

import torch

from calibration.common import Env, is_opt, make_env, model_main, model_spec, time_calls, write_csv


def hf_config(spec, num_layers: int):
    """A transformers config with the spec's dims (ChatGLM2 runs as a Llama-layout equivalent:
    same GQA, SwiGLU and sizes; its own modelling code needs remote code)."""
    import transformers as tf

    common = dict(vocab_size=spec.vocab_size, hidden_size=spec.hidden_size,
                  num_hidden_layers=num_layers, num_attention_heads=spec.num_heads,
                  max_position_embeddings=max(spec.max_model_len, 40000))
    if is_opt(spec):
        return tf.OPTConfig(ffn_dim=spec.intermediate_size, word_embed_proj_dim=spec.hidden_size,
                            do_layer_norm_before=True, **common)
    if spec.name.startswith("qwen"):
        return tf.Qwen2Config(intermediate_size=spec.intermediate_size,
                              num_key_value_heads=spec.num_kv_heads, tie_word_embeddings=False,
                              **common)
    return tf.LlamaConfig(intermediate_size=spec.intermediate_size,
                          num_key_value_heads=spec.num_kv_heads, head_dim=spec.head_dim,
                          tie_word_embeddings=spec.tied_embeddings, **common)


def build_model(spec, env: Env, num_layers: int, attention: str = "sdpa"):
    """(config, model): a random-weight transformers model of ``spec`` (no download)."""
    from transformers import AutoModelForCausalLM

    cfg = hf_config(spec, num_layers)
    cfg._attn_implementation = attention
    with torch.device(env.device):
        lm = AutoModelForCausalLM.from_config(cfg, dtype=env.dtype).eval()
    return cfg, lm


def split_of(grid_index: int) -> str:
    """Every third shape of the grid is held out of fitting."""
    return "heldout" if grid_index % 3 == 2 else "fit"


def layers_that_fit(spec, env: Env, fraction: float = 0.45) -> int:
    """All layers, unless the weights would take more than ``fraction`` of the GPU memory."""
    if not env.is_cuda:
        return spec.num_layers
    total = torch.cuda.get_device_properties(0).total_memory
    per_layer = spec.params_per_layer * spec.dtype_bytes
    embed = 2 * spec.vocab_size * spec.hidden_size * spec.dtype_bytes
    return int(max(1, min(spec.num_layers, (fraction * total - embed) // per_layer)))


def shapes(env: Env) -> list[tuple[str, int, int, int]]:
    """(phase, batch, new tokens per row, context tokens per row)."""
    if env.smoke:
        return [("prefill", 1, 16, 0), ("prefill", 2, 32, 0), ("decode", 2, 1, 32),
                ("decode", 4, 1, 64), ("mixed", 1, 16, 32), ("mixed", 1, 8, 64)]
    out = []
    for b in (1, 4):
        for s in (64, 256, 1024, 2048, 4096, 8192):
            if b * s <= 16384:
                out.append(("prefill", b, s, 0))
    for b in (1, 8, 32, 128):
        for c in (256, 1024, 4096):
            if b * c <= 131072:
                out.append(("decode", b, 1, c))
    for q in (64, 512, 2048):
        for c in (512, 4096):
            out.append(("mixed", 1, q, c))
    return out


def _time_shape(lm, cfg, env: Env, vocab: int, phase: str, b: int, q: int, c: int) -> float:
    from transformers import DynamicCache

    ids = torch.randint(0, vocab, (b, q), device=env.device)
    if phase == "prefill":
        return time_calls(lambda: lm(input_ids=ids, use_cache=False, logits_to_keep=1), env)
    cache = DynamicCache(config=cfg)
    chunk = max(1, 8192 // b)  # build the context in chunks: one huge prefill would not fit
    for start in range(0, c, chunk):
        n = min(chunk, c - start)
        lm(input_ids=torch.randint(0, vocab, (b, n), device=env.device), past_key_values=cache,
           use_cache=True, logits_to_keep=1)

    def fn():
        lm(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
        cache.crop(-q)  # drop the step's tokens: the same context for the next rep

    t = time_calls(fn, env)
    assert cache.get_seq_length() == c, "the timed step must not grow the context"
    return t


def _time_shape_or_fallback(lm, cfg, env, vocab, phase, b, q, c) -> float:
    """Time a shape; if torch's cuDNN attention backend fails on it (seen on H100 for MHA
    models such as llama-2-13b: "mha_graph.execute ... is_good()"), turn that backend off for
    the rest of the run and retry, so SDPA falls back to flash/efficient kernels. The switch is
    printed and recorded in the provenance (``cudnn_sdp_disabled``)."""
    try:
        return _time_shape(lm, cfg, env, vocab, phase, b, q, c)
    except RuntimeError as e:
        if "mha_graph" not in str(e) or not torch.backends.cuda.cudnn_sdp_enabled():
            raise
        print(f"cuDNN SDPA failed at {phase} b={b} q={q} c={c}; disabling it", flush=True)
        torch.backends.cuda.enable_cudnn_sdp(False)
        CUDNN_FALLBACK["cudnn_sdp_disabled"] = True
        return _time_shape(lm, cfg, env, vocab, phase, b, q, c)


CUDNN_FALLBACK: dict = {"cudnn_sdp_disabled": False}


@torch.inference_mode()
def run(model: str, out: Path, smoke: bool, rounds: int = 1) -> list[Path]:
    """``rounds`` > 1 times the whole grid that many times, interleaved, and keeps each shape's
    median over rounds: the eager engine's host-bound steps drift over minutes, and a shape
    measured in one burst carries whatever the drift was then."""
    from transformers import DynamicCache

    env = make_env(smoke)
    spec = model_spec(model, env)
    n_layers = layers_that_fit(spec, env)
    if env.is_cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        free0, total = torch.cuda.mem_get_info()
    cfg, lm = build_model(spec, env, n_layers)
    weight_bytes = sum(p.numel() * p.element_size() for p in lm.parameters())
    vocab = spec.vocab_size
    rows, mem_rows = [], []
    grid = shapes(env)
    times: dict[int, list[float]] = {i: [] for i in range(len(grid))}
    for _ in range(rounds):
        for i, (phase, b, q, c) in enumerate(grid):
            try:
                times[i].append(_time_shape_or_fallback(lm, cfg, env, vocab, phase, b, q, c))
            except torch.OutOfMemoryError:
                print(f"skip {phase} b={b} q={q} c={c}: out of memory", flush=True)
            finally:
                if env.is_cuda:
                    torch.cuda.empty_cache()
    for i, (phase, b, q, c) in enumerate(grid):
        if times[i]:
            split = split_of(i)
            rows.append((phase, b, q, c, n_layers, statistics.median(times[i]), split))
    if env.is_cuda:  # memory: activations per batched token, KV per token, reserve
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        for t_tok in (2048, 8192):
            torch.cuda.reset_peak_memory_stats()
            lm(input_ids=torch.randint(0, vocab, (1, t_tok), device=env.device), use_cache=False,
               logits_to_keep=1)
            act = (torch.cuda.max_memory_allocated() - base) / t_tok
            mem_rows.append(("activation_bytes_per_token", t_tok, act))
        cache = DynamicCache(config=cfg)
        before = torch.cuda.memory_allocated()
        lm(input_ids=torch.randint(0, vocab, (4, 1024), device=env.device), past_key_values=cache,
           use_cache=True, logits_to_keep=1)
        kv = (torch.cuda.memory_allocated() - before) / (4 * 1024) * spec.num_layers / n_layers
        mem_rows.append(("kv_bytes_per_token", 4096, kv))
        del cache
        torch.cuda.empty_cache()
        free1, _ = torch.cuda.mem_get_info()
        used = total - free1
        mem_rows += [("weight_bytes_run", n_layers, float(weight_bytes)),
                     ("device_used_bytes", 0, float(used)),
                     ("torch_reserved_bytes", 0, float(torch.cuda.memory_reserved())),
                     ("context_and_other_bytes", 0, float(used - torch.cuda.memory_reserved())),
                     ("gpu_total_bytes", 0, float(total))]
    paths = [write_csv(out / "model_steps.csv",
                       ["phase", "batch", "new_tokens", "context_tokens", "num_layers", "time_s",
                        "split"], rows)]
    if mem_rows:
        paths.append(write_csv(out / "memory.csv", ["quantity", "at", "value"], mem_rows))
    return paths


def main() -> None:
    model_main(__doc__, run, option=("--rounds", int, 1, "interleaved repeats of the grid"))


if __name__ == "__main__":
    main()
