"""How fast this machine's host runs the engine's host-bound work.

The eager engines' step costs are mostly host-CPU work: launching a layer's kernels one by one,
and building an attention execution plan (cuDNN on Hopper) for every new SDPA shape. Machines of
one GPU kind differ in it by up to ~30% between sessions (measured: the same validation case run
hours apart, 20-40% apart in E2E), which no per-GPU cost fit can know. This probe measures the
two costs on the machine a run is on, with fixed shapes and no dependence on the workload, so a
simulation could price the run at its host's speed (recorded in ``case.json`` ``host_probe``;
not an input yet: it tracked the engine's speed only loosely, see calibration/README.md):

- ``eager_forward_s``: median of a cached full-model forward of one row of 16 tokens (no KV
  cache): almost all kernel launches, little GPU work.
- ``plan_build_s``: median extra time of the first masked-SDPA call of a new shape over a second
  call of it, with the model's head geometry; the shapes (3 rows x 5 queries) never occur in
  either engine, so a probe after a run measures fresh builds and leaves its plans alone.
- ``cpu_loop_s``: a pure-Python loop (the engines' schedulers are Python).

The host's speed also moves within a run (measured: the Python loop 2x slower for tens of
seconds on an otherwise idle H100 machine), so the replay also runs ``host_sampler`` beside each
case: a timeline of a Python loop's time and the CPUs' steal share (``host_samples.csv``).

    python -m calibration.host_probe --model llama-3.1-8b   # prints the probe as JSON
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from calibration.host_sampler import cpu_loop_s

PROBE_ROWS, PROBE_QUERY = 3, 5  # an SDPA shape neither engine makes (packed: 1 row; generate: q 1)


def _timed(fn, env) -> float:
    if env.is_cuda:
        torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    if env.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - t


def eager_forward_s(lm, env, reps: int = 15) -> float:
    ids = torch.arange(3, 19, device=env.device).unsqueeze(0)
    for _ in range(3):  # builds its plans and allocations
        _timed(lambda: lm(input_ids=ids, use_cache=False), env)
    return statistics.median(_timed(lambda: lm(input_ids=ids, use_cache=False), env)
                             for _ in range(reps))


def plan_build_s(spec, env, num_shapes: int = 8, first_kv: int = 4099) -> float:
    extra = []
    for i in range(num_shapes):
        kv = first_kv + 37 * i  # each a shape this process has not run
        q = torch.randn(PROBE_ROWS, spec.num_heads, PROBE_QUERY, spec.head_dim, device=env.device,
                        dtype=env.dtype)
        k = torch.randn(PROBE_ROWS, spec.num_heads, kv, spec.head_dim, device=env.device,
                        dtype=env.dtype)
        mask = torch.ones(PROBE_ROWS, 1, PROBE_QUERY, kv, device=env.device, dtype=torch.bool)

        def call():
            F.scaled_dot_product_attention(q, k, k, attn_mask=mask)
        first = _timed(call, env)
        again = min(_timed(call, env) for _ in range(3))
        extra.append(first - again)
    return statistics.median(extra)


def host_probe(lm, spec, env) -> dict:
    """The probe of this process's host (see the module doc); a few seconds."""
    with torch.inference_mode():
        out = dict(eager_forward_s=eager_forward_s(lm, env), plan_build_s=plan_build_s(spec, env),
                   cpu_loop_s=min(cpu_loop_s() for _ in range(3)))
    return {k: round(v, 6) for k, v in out.items()}


def main() -> None:
    from calibration.cb_engine import build_model
    from calibration.common import make_env

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="llama-3.1-8b")
    ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args()
    env = make_env(a.smoke)
    spec, lm = build_model(a.model, env)
    print(json.dumps(host_probe(lm, spec, env)))


if __name__ == "__main__":
    main()
