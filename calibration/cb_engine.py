"""transformers' continuous-batching engine as the replays drive it: the model built from a
config (random weights), the engine's knobs set on whichever object its version reads them from,
its resolved configuration read back, and hooks that log each step's composition and times
(``STEP_LOG``) whatever the engine version.
"""
from __future__ import annotations

import time

import torch

from calibration.common import model_spec
from calibration.step_probe import PROBE
from calibration.whole_model import hf_config

STEP_LOG: list[dict] = []  # appended by the engine thread through the hooks below


def build_model(name: str, env):
    from transformers import AutoModelForCausalLM

    spec = model_spec(name, env)
    cfg = hf_config(spec, spec.num_layers)
    torch.manual_seed(0)
    with torch.device(env.device):
        lm = AutoModelForCausalLM.from_config(cfg, dtype=env.dtype).eval()
    return spec, lm


# ---- hooks: per-step composition and time, whatever the engine version ----------------------
def _hook_schedule() -> dict:
    from transformers.generation.continuous_batching import scheduler as sched_mod

    found = {}
    for cls_name in dir(sched_mod):
        cls = getattr(sched_mod, cls_name)
        if isinstance(cls, type) and hasattr(cls, "schedule_batch") and "schedule_batch" in vars(cls):
            orig = cls.schedule_batch

            def wrapped(self, *a, _orig=orig, **k):
                t = time.perf_counter()
                snap = PROBE.snapshot()
                res = _orig(self, *a, **k)
                reqs = res[0] if isinstance(res, tuple) else res
                rows = []
                for x in reqs or []:
                    st = getattr(x, "state", x)
                    q = getattr(x, "query_length", None)
                    if q is None:
                        toks = getattr(st, "tokens_to_process", None) or getattr(st, "prompt_ids", None)
                        q = len(toks) if toks is not None else -1
                    pos = getattr(st, "position_offset", -1)
                    rows.append((q, pos))
                STEP_LOG.append(dict(t_schedule=t, t_scheduled=time.perf_counter(), reqs=rows,
                                     budget=list(a), probe=snap))
                return res

            cls.schedule_batch = wrapped
            found[cls_name] = True
    return found


def _mark_step_end() -> None:
    from transformers.generation.continuous_batching import continuous_api as api

    cls = api.ContinuousBatchProcessor
    orig = cls.update_batch

    def wrapped(self, *a, **k):
        # when the step's outputs start to be applied: schedule -> scheduled -> update -> end
        # splits a step into the scheduler, the forward pass and sampling, and the update
        t_update = time.perf_counter()
        res = orig(self, *a, **k)
        if STEP_LOG and "t_end" not in STEP_LOG[-1]:
            STEP_LOG[-1].update(t_update=t_update, t_end=time.perf_counter(),
                                **PROBE.since(STEP_LOG[-1]["probe"]))
        return res

    cls.update_batch = wrapped


def cb_config(case: dict):
    """The engine's knobs, set on whichever object this transformers version reads them from."""
    from transformers import GenerationConfig

    # CUDA graphs off by default: with unpadded shapes the engine captures a new graph for
    # almost every step (~100 ms each, measured), which no deployment would run; synchronous
    # batching so each step's time is its own. Both are recorded and can be set per case.
    knobs = {"use_cuda_graph": False, "use_async_batching": False}
    knobs.update({k: case[k] for k in ("max_batch_tokens", "num_blocks", "block_size",
                                       "use_cuda_graph", "use_async_batching", "max_memory_percent",
                                       "safety_margin", "max_requests_per_batch",
                                       "allow_block_sharing") if k in case})
    if "scheduler" in case:  # the field is ``scheduler_type`` in ContinuousBatchingConfig
        knobs["scheduler_type"] = knobs["scheduler"] = case["scheduler"]
    gen = GenerationConfig(max_new_tokens=16, do_sample=False, eos_token_id=-1, pad_token_id=0)
    try:
        import dataclasses

        from transformers import ContinuousBatchingConfig  # newer releases
        names = {f.name for f in dataclasses.fields(ContinuousBatchingConfig)}
        used = {k: v for k, v in knobs.items() if k in names}
        return gen, ContinuousBatchingConfig(**used), used
    except (ImportError, TypeError):
        for k, v in knobs.items():
            setattr(gen, k, v)
        return gen, None, knobs


def resolved_config(manager) -> dict:
    out = {}
    bp = getattr(manager, "batch_processor", None)
    cache = getattr(bp, "cache", None)
    for obj, keys in ((bp, ("max_batch_tokens", "max_requests_per_batch")),
                      (cache, ("num_blocks", "block_size", "max_batch_tokens", "num_pages",
                               "max_blocks_per_request", "max_tokens_read")),
                      (getattr(bp, "scheduler", None), ("safety_margin", "max_requests_per_batch")),
                      (bp, ("use_async_batching", "use_cuda_graph")),
                      (getattr(manager, "continuous_batching_config", None),
                       ("use_cuda_graph", "use_async_batching", "scheduler_type", "page_size",
                        "max_memory_percent", "q_padding_interval_size")),
                      (getattr(bp, "cache", None), ("use_prefix_sharing", "allow_block_sharing")),
                      (manager, ("use_cuda_graph", "_use_cuda_graph", "use_prefix_sharing",
                                 "_use_prefix_sharing"))):
        for k in keys:
            v = getattr(obj, k, None)
            if isinstance(v, (int, float, bool, str, tuple)):
                out.setdefault(k, v)
    sched = getattr(bp, "scheduler", None)
    out["scheduler_class"] = type(sched).__name__ if sched is not None else None
    return out


def install_hooks() -> dict:
    """Log every step (scheduler, then the output update): the scheduler classes hooked."""
    found = _hook_schedule()
    _mark_step_end()
    return found
