"""The static-batching harness of the real-engine runs: a closed set, all arriving at 0,
run as left-padded groups through ``model.generate`` (FCFS or sorted by prompt length), every
group's time and per-token step times recorded. ``calibration/replay.py`` runs it for a plan's
``kind: static`` cases; ``calibration/generate_steps.py`` reuses its groups and clock."""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from calibration.common import random_prompt, read_trace, write_csv


def static_groups(trace: list[dict], batch: int, order: str) -> list[list[int]]:
    """Indices of the closed set's groups of ``batch``: FCFS, or sorted by prompt length."""
    idx = list(range(len(trace)))
    if order == "sorted":
        idx.sort(key=lambda i: trace[i]["prompt_tokens"])
    return [idx[i:i + batch] for i in range(0, len(idx), batch)]


class StepClock:
    """``generate``'s streamer: put() once for the prompt, then once per new token; with
    ``sync`` each mark waits for the GPU, so it is when that token existed."""

    def __init__(self, env, sync: bool = True) -> None:
        self.env, self.sync, self.times = env, sync, []

    def put(self, _) -> None:
        if self.sync:
            if self.env.is_cuda:
                torch.cuda.synchronize()
            self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


def generate_padded(lm, env, lens: list[int], new_tokens: int, vocab: int, gen, streamer=None):
    """One ``generate`` call on a left-padded group of random prompts of ``lens`` tokens (drawn
    in row order from ``gen``), eos off: every row makes exactly ``new_tokens``."""
    s = max(lens)
    ids = torch.zeros((len(lens), s), dtype=torch.long)
    mask = torch.zeros((len(lens), s), dtype=torch.long)
    for row, p in enumerate(lens):
        ids[row, s - p:] = torch.tensor(random_prompt(p, vocab, gen))
        mask[row, s - p:] = 1
    lm.generate(input_ids=ids.to(env.device), attention_mask=mask.to(env.device),
                max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                eos_token_id=None, pad_token_id=0, streamer=streamer)


def run_static(case: dict, lm, spec, env, out: Path) -> None:
    """A closed set, all arriving at 0, run as left-padded groups of ``batch_size`` (FCFS order
    or sorted by prompt length); each group generates its longest output, eos disabled."""
    trace = read_trace(Path(case["trace"]), case.get("limit"))
    gen = torch.Generator().manual_seed(1)
    groups = static_groups(trace, case["batch_size"], case.get("order", "fcfs"))
    lm.config._attn_implementation = "sdpa"

    def one(g, clock=None):
        n = max(trace[i]["output_tokens"] for i in g)
        lens = [trace[i]["prompt_tokens"] for i in g]
        generate_padded(lm, env, lens, n, spec.vocab_size, gen, clock)
        return max(lens), n

    one(groups[0][:2])  # warm-up
    rows, batches = [], []
    t0 = time.perf_counter()
    for k, g in enumerate(groups):
        clock = StepClock(env)
        start = time.perf_counter()
        s, n = one(g, clock)
        end = time.perf_counter()
        first = clock.times[1] if len(clock.times) > 1 else end
        gaps = sorted(b - a for a, b in zip(clock.times[1:], clock.times[2:]))
        tpot = gaps[len(gaps) // 2] if gaps else float("nan")
        batches.append((k, len(g), s, n, start - t0, first - t0, end - t0, tpot))
        for i in g:
            rows.append((f"r{i}", 0.0, 0.0, trace[i]["prompt_tokens"], trace[i]["output_tokens"],
                         n, start - t0, first - t0, end - t0, end - t0, end - t0, ""))
    write_csv(out / "requests.csv", ["request_id", "trace_arrival_s", "arrival_s", "prompt_tokens",
                                     "output_tokens", "generated_tokens", "start_s",
                                     "first_token_s", "last_token_s", "finish_s", "returned_s",
                                     "error"], rows)
    write_csv(out / "batches.csv", ["batch", "rows", "padded_prompt_tokens", "new_tokens",
                                    "start_s", "first_token_s", "end_s", "median_step_s"], batches)
    (out / "case.json").write_text(json.dumps(dict(case=case, t0_perf_s=t0), indent=2) + "\n")
