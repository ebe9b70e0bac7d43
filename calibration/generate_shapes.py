"""Which ``generate`` steps pay a one-off build, and what they are keyed on.

In one process, a sequence of short padded groups that each differ in one thing from the one
before (the same group again; KV shifted by 200 or by 1-16 tokens; fewer rows; no padding; short
prompts), every step timed; ``builds`` lists the decode steps over 3x their group's median.
Findings are in calibration/README.md.

    python -m calibration.generate_shapes --model llama-3.1-8b --out "$OUT"

Writes ``<out>/<gpu>/<model>/generate_shapes.csv``: one row per step (step 0 is the prefill).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch

from calibration.cb_engine import build_model
from calibration.common import make_env, provenance, write_csv, write_provenance
from calibration.generate_steps import run_group, trace_groups

HEADER = ["seq", "label", "rows", "padded_prompt_tokens", "min_prompt_tokens", "step",
          "kv_tokens", "step_s"]
NEW_TOKENS = 12


def sequence(first: list[int]) -> list[tuple[str, list[int]]]:
    """Groups that each change one thing from the closed set's first FCFS group ``first``."""
    s = max(first)
    return [
        ("first", first),
        ("first_again", first),  # a cache: nothing new
        ("kv_plus200", [p + 200 for p in first]),  # same alignments, other lengths
        *[(f"kv_plus{d}", [p + d for p in first]) for d in (1, 2, 3, 4, 8, 16)],
        ("rows8", first[:8]),
        ("rows2", first[:2]),
        ("rows1", first[:1]),
        ("unpadded", [s] * len(first)),
        ("short", [max(1, p * 125 // s) for p in first]),
        ("short_rows1", [128]),
        ("long_rows1", [1024]),
    ]


def builds(df: pd.DataFrame, factor: float = 3.0) -> pd.DataFrame:
    """The decode steps that took more than ``factor`` x their group's median decode step."""
    dec = df[df["step"] > 0]
    med = dec.groupby("seq")["step_s"].transform("median")
    return dec[dec["step_s"] > factor * med].assign(excess_s=lambda d: d["step_s"] - med[d.index])


def run(model: str, out: Path, smoke: bool) -> Path:
    env = make_env(smoke)
    spec, lm = build_model(model, env)
    lm.config._attn_implementation = "sdpa"
    gen = torch.Generator().manual_seed(1)
    first = trace_groups(16)["fcfs0"]
    new_tokens = NEW_TOKENS
    if smoke:
        first, new_tokens = [min(p, 40) for p in first][:4], 3
    rows: list[tuple] = []
    with torch.inference_mode():
        for seq, (label, lens) in enumerate(sequence(first)):
            steps = run_group(lm, env, lens, new_tokens, spec.vocab_size, gen, True)
            for k, t in enumerate(steps):
                rows.append((seq, label, len(lens), max(lens), min(lens), k, max(lens) + k, t))
    gpu = "cpu" if not env.is_cuda else next(
        (g for g in ("h200", "h100") if g in torch.cuda.get_device_name(0).lower()), "gpu")
    d = out / gpu / model
    write_csv(d / "generate_shapes.csv", HEADER, rows)
    write_provenance(d / "provenance_generate_shapes.json", provenance(
        env, f"python -m calibration.generate_shapes --model {model}", {"model": model}))
    return d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="one per process: the build cache is the "
                    "process's, so a second model would find the first one's builds")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args()
    t = time.time()
    d = run(a.model, a.out, a.smoke)
    print(f"DONE {a.model} in {time.time() - t:.0f}s -> {d}", flush=True)


if __name__ == "__main__":
    main()
