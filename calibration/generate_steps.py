"""Step times of transformers' ``model.generate`` on left-padded static batches.

The static-batching validation runs (``replay.py run_static``) time whole groups; their decode
steps differ by 2x between groups of the same padded shape, and a single run cannot tell the
group's content from the machine's moment. This measures it apart from the validation runs:
the closed set's groups (FCFS and sorted) and a synthetic grid of (rows, padded prompt, shortest
prompt), each run ``--rounds`` times in interleaved order, every step timed (the streamer
synchronises, as the harness does); plus each trace group once without the per-token
synchronisation, and once with one intra-op CPU thread. Random weights, nothing downloaded.

    python -m calibration.generate_steps --model llama-3.1-8b --out "$OUT"

Writes ``<out>/<gpu>/<model>/generate_steps.csv``: one row per generate step
(step 0 is the prefill) with the group's shape, variant and round.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from calibration.cb_engine import build_model
from calibration.common import make_env, provenance, read_trace, write_csv, write_provenance
from calibration.static_harness import StepClock, generate_padded, static_groups

TRACE = Path(__file__).resolve().parent / "validation" / "workloads" / "closed64.csv"
HEADER = ["label", "variant", "round", "rows", "padded_prompt_tokens", "min_prompt_tokens",
          "sum_prompt_tokens", "new_tokens", "step", "step_s"]


def trace_groups(batch: int) -> dict[str, list[int]]:
    """The closed set's groups in both orders (prompt lengths), keyed by order and index."""
    trace = read_trace(TRACE)
    out = {}
    for order in ("fcfs", "sorted"):
        for k, g in enumerate(static_groups(trace, batch, order)):
            out[f"{order}{k}"] = [trace[i]["prompt_tokens"] for i in g]
    return out


def grid_groups() -> dict[str, list[int]]:
    """Rows x padded length x shortest/longest ratio (1.0: no padding)."""
    out = {}
    for rows in (1, 16):
        for s in (128, 1024):
            for frac in (1.0, 0.5, 0.1):
                if rows == 1 and frac < 1.0:
                    continue
                lo = max(1, int(s * frac))
                lens = [lo + (s - lo) * r // max(rows - 1, 1) for r in range(rows)]
                out[f"b{rows}_s{s}_f{frac}"] = lens
    return out


def run_group(lm, env, lens: list[int], new_tokens: int, vocab: int, gen, sync: bool):
    """One generate call; per-step seconds (sync) or [prefill-inclusive total] (no sync)."""
    clock = StepClock(env, sync)
    if env.is_cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    generate_padded(lm, env, lens, new_tokens, vocab, gen, clock)
    if env.is_cuda:
        torch.cuda.synchronize()
    if not sync:
        return [time.perf_counter() - t0]
    # times[0]: prompt handed over (before prefill); times[1]: first token; then one per step
    marks = [t0] + clock.times[1:]
    return [b - a for a, b in zip(marks, marks[1:])]


def run(model: str, out: Path, new_tokens: int, rounds: int, batch: int, smoke: bool) -> Path:
    env = make_env(smoke)
    spec, lm = build_model(model, env)
    lm.config._attn_implementation = "sdpa"
    gen = torch.Generator().manual_seed(1)
    groups = trace_groups(batch)
    grid = grid_groups()
    if smoke:
        groups = {k: [min(p, 48) for p in v][:3] for k, v in list(groups.items())[:2]}
        grid = {k: [min(p, 48) for p in v][:3] for k, v in list(grid.items())[:2]}
        new_tokens, rounds = 4, 1
    rows: list[tuple] = []

    def record(label, variant, rnd, lens, steps):
        for k, t in enumerate(steps):
            rows.append((label, variant, rnd, len(lens), max(lens), min(lens), sum(lens),
                         new_tokens, k, t))

    with torch.inference_mode():
        run_group(lm, env, [32, 16], 4, spec.vocab_size, gen, True)  # warm-up
        for rnd in range(rounds):  # interleaved: a slow minute hits every group alike
            for label, lens in {**groups, **grid}.items():
                record(label, "sync", rnd, lens,
                       run_group(lm, env, lens, new_tokens, spec.vocab_size, gen, True))
        for label, lens in groups.items():
            record(label, "nosync", 0, lens,
                   run_group(lm, env, lens, new_tokens, spec.vocab_size, gen, False))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        for label, lens in groups.items():
            record(label, "threads1", 0, lens,
                   run_group(lm, env, lens, new_tokens, spec.vocab_size, gen, True))
        torch.set_num_threads(threads)
    gpu = "cpu" if not env.is_cuda else next(
        (g for g in ("h200", "h100") if g in torch.cuda.get_device_name(0).lower()), "gpu")
    d = out / gpu / model
    write_csv(d / "generate_steps.csv", HEADER, rows)
    write_provenance(d / "provenance.json", provenance(
        env, f"python -m calibration.generate_steps --model {model} --new-tokens {new_tokens} "
             f"--rounds {rounds} --batch {batch}",
        {"model": model, "torch_threads": threads, "cpus": os.cpu_count(),
         "affinity": len(os.sched_getaffinity(0))}))
    return d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", nargs="+", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--new-tokens", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args()
    for m in a.model:
        t = time.time()
        d = run(m, a.out, a.new_tokens, a.rounds, a.batch, a.smoke)
        print(f"DONE {m} in {time.time() - t:.0f}s -> {d}", flush=True)


if __name__ == "__main__":
    main()
