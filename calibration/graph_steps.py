"""Whole-model steps as a CUDA-graph engine runs them: the same real transformers model and
shape grid as ``whole_model.py``, but the KV cache is preallocated and written in place (a
``StaticCache`` sized to the step: no ``torch.cat`` copies) and each step is captured once in a
CUDA graph and timed as graph replays. What is left is the GPU's own time for the step, with no
Python or launch gaps — the ground truth for ``latency.engine: kernels`` (vLLM-like engines
replay decode steps from CUDA graphs). The eager steps of ``whole_model.py`` are host-bound for
small batches and drift by tens of percent between minutes; these do not.

If a phase cannot be captured with the installed transformers (its mask code may read a GPU
value on the host), that phase falls back to the GPU busy time of an eager call, from the
torch profiler: the union of the kernels' intervals (no launch gaps). Each row names its
``method``: cuda_graph | kernel_busy | cpu (smoke mode).

    python -m calibration.graph_steps --model llama-3.1-8b --out llmsim/profiles/h100/llama-3.1-8b
"""
from __future__ import annotations

from pathlib import Path

import torch

from calibration.common import (
    Env,
    as_graph,
    engine_sdpa,
    make_env,
    model_main,
    model_spec,
    time_calls,
    time_fn,
    write_csv,
)
from calibration.whole_model import build_model, layers_that_fit, shapes, split_of

ATTENTION = "llmsim_nomask"  # (a name with "flash" in it makes transformers look for a kernel)

HEADER = ["phase", "batch", "new_tokens", "context_tokens", "num_layers", "time_s", "split",
          "method"]


def nomask_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0,
                     **kwargs):
    """transformers' attention interface over ``engine_sdpa``. Valid for this grid, where no
    row is padded and the cache holds exactly the step's context (transformers' own SDPA path
    builds a full mask under CUDA-graph capture and for static-cache decodes, and then repeats
    the KV heads: a cost no paged/flash engine pays)."""
    return engine_sdpa(query, key, value, scale=scaling).transpose(1, 2).contiguous(), None


def register_attention() -> None:
    """Make ``ATTENTION`` a transformers attention implementation that builds no mask."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(ATTENTION, nomask_attention)
    AttentionMaskInterface.register(ATTENTION, lambda *args, **kwargs: None)


def _static_cache(cfg, b: int, max_len: int, env: Env):
    from transformers import StaticCache

    try:
        return StaticCache(config=cfg, max_cache_len=max_len)
    except TypeError:  # older signature: sizes and placement up front
        return StaticCache(config=cfg, max_batch_size=b, max_cache_len=max_len,
                           device=env.device, dtype=env.dtype)


def _reset_cache_position(cache, c: int) -> None:
    """Newer StaticCache layers keep their write position in a device tensor that every update
    advances; put it back to ``c`` (in the graph too) so each replay writes the same slots."""
    for layer in getattr(cache, "layers", []):
        pos = getattr(layer, "cumulative_length", None)
        if isinstance(pos, torch.Tensor):
            pos.fill_(c)


def make_step(lm, cfg, env: Env, vocab: int, phase: str, b: int, q: int, c: int):
    """A zero-argument call that runs one step of ``b`` rows, ``q`` new tokens each, over ``c``
    cached tokens, leaving the cache as it found it (so it can be replayed)."""
    # A private generator: a failed capture leaves the default CUDA generator unusable.
    gen = torch.Generator(device=env.device)
    gen.manual_seed(b * 1_000_003 + q * 1009 + c)
    ids = torch.randint(0, vocab, (b, q), device=env.device, generator=gen)
    positions = torch.arange(c, c + q, device=env.device)
    kw = dict(input_ids=ids, position_ids=positions.unsqueeze(0).expand(b, q), logits_to_keep=1)
    if cfg.model_type == "opt":  # OPT sizes a default mask from the cache length (a host read)
        kw["attention_mask"] = torch.ones(b, c + q, dtype=torch.long, device=env.device)
    if phase == "prefill":
        return lambda: lm(use_cache=False, **kw)
    cache = _static_cache(cfg, b, c + q, env)
    kw.update(past_key_values=cache, cache_position=positions, use_cache=True)
    lm(**kw)  # allocates the cache tensors (lazily, on first update)
    for layer in getattr(cache, "layers", []):
        for t in (getattr(layer, "keys", None), getattr(layer, "values", None)):
            if isinstance(t, torch.Tensor):
                t.normal_(0, 1, generator=gen)  # a random context, never zeros

    def step():
        _reset_cache_position(cache, c)
        return lm(**kw)

    step.cache = cache  # keep the cache alive as long as the call (and any graph of it)
    return step


def graph_time_s(step, env: Env, reps: int = 20) -> float:
    """Capture ``step`` in a CUDA graph (after warm-up on a side stream) and time replays."""
    return time_calls(as_graph(step), env, reps=reps, warmup=3)


def busy_time_s(step, reps: int = 5) -> float:
    """GPU busy time of an eager call: the union of its kernels' intervals, per call."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    for _ in range(2):
        step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            step()
        torch.cuda.synchronize()
    spans = sorted((e.time_range.start, e.time_range.end) for e in prof.events()
                   if e.device_type == DeviceType.CUDA)
    return _union_us(spans) / reps / 1e6


def _union_us(spans: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for s, e in spans:
        if e <= end:
            continue
        total += e - max(s, end)
        end = e
    return total


@torch.inference_mode()
def run(model: str, out: Path, smoke: bool) -> list[Path]:
    env = make_env(smoke)
    spec = model_spec(model, env)
    n_layers = layers_that_fit(spec, env)
    register_attention()
    cfg, lm = build_model(spec, env, n_layers, ATTENTION)
    no_graph: dict[str, str] = {}  # phase -> why capture failed (then every shape falls back)
    rows = []
    for i, (phase, b, q, c) in enumerate(shapes(env)):
        split = split_of(i)  # the same split as model_steps.csv
        try:
            step = make_step(lm, cfg, env, spec.vocab_size, phase, b, q, c)
            if not env.is_cuda:
                t, method = time_fn(step, env), "cpu"
            elif phase not in no_graph:
                try:
                    t, method = graph_time_s(step, env), "cuda_graph"
                except Exception as e:  # noqa: BLE001 - any capture failure: fall back, say why
                    if isinstance(e, torch.OutOfMemoryError):
                        raise
                    no_graph[phase] = str(e).splitlines()[0][:200]
                    print(f"no CUDA graph for {phase}: {no_graph[phase]}", flush=True)
                    torch.cuda.synchronize()
                    step = make_step(lm, cfg, env, spec.vocab_size, phase, b, q, c)
            if env.is_cuda and phase in no_graph:
                t, method = busy_time_s(step), "kernel_busy"
            rows.append((phase, b, q, c, n_layers, t, split, method))
            print(f"{phase} b={b} q={q} c={c}: {t * 1e3:.3f} ms ({method})", flush=True)
        except torch.OutOfMemoryError:
            print(f"skip {phase} b={b} q={q} c={c}: out of memory", flush=True)
        finally:
            step = None
            if env.is_cuda:
                torch.cuda.empty_cache()
    GRAPH_FALLBACK.update(no_graph)
    return [write_csv(out / "model_steps_graph.csv", HEADER, rows)]


GRAPH_FALLBACK: dict[str, str] = {}  # recorded in the provenance by run_gpu


def main() -> None:
    model_main(__doc__, run)


if __name__ == "__main__":
    main()

