"""Real engines' step logs read as step rows, and which steps built something new: an eager
step's attention plan per (rows, query, KV) SDPA shape, a CUDA-graph step's graph per padded
(query, KV) size, ``generate``'s padded shapes. ``engine_fit`` fits on these rows; ``cases``
rebuilds what a replayed engine process had built before a case."""
from __future__ import annotations

from pathlib import Path

from calibration.warmup import WARMUP_NEW_TOKENS, WARMUP_PROMPT_TOKENS, WARMUP_REQUESTS

GRAPH_Q_PADDING = 64  # transformers' continuous batching pads a graph step's queries to this
GRAPH_KV_PADDING = 64 * 256  # ... the KV it reads from the cache to this (64 blocks of 256)
GRAPH_ROW_KV_MIN = 1024  # ... and its longest row's KV to a power of two, at least this
Shape = tuple[int, int, int]  # the SDPA call: (batch rows, query tokens, KV tokens) per row


def packed_shape(query_tokens: int, kv_tokens: int) -> Shape:
    """A continuous-batching step's SDPA call: every query over every KV token, in one row."""
    return 1, query_tokens, kv_tokens


def _round_up(x, step: int):
    """``x`` rounded up to a multiple of ``step`` (ints or integer arrays)."""
    return -(-x // step) * step


def graph_shape(query_tokens: int, kv_tokens: int, max_row_kv: int) -> Shape:
    """The CUDA graph a step of the engine in graph mode replays, keyed as the engine keys it:
    (query tokens padded to ``GRAPH_Q_PADDING``, the KV read from the cache, ``kv_tokens`` less
    the step's own new ones, padded to ``GRAPH_KV_PADDING``, the longest row's KV padded to a
    power of two of at least ``GRAPH_ROW_KV_MIN``). A new one is captured the first time
    (~0.1-0.2 s on the H200 runs, where a replayed decode step took 0.036 s). This key matches
    the captures the engine logged (a step that ran 64 SDPA calls: two forwards) on 1,318 of
    1,322 steps of the H200 graph runs; keyed by (query, KV) alone, it missed every recapture
    where the longest row crossed 1,024 or 2,048 tokens."""
    read = max(kv_tokens - query_tokens, 0)
    row = GRAPH_ROW_KV_MIN
    while row < max_row_kv:
        row *= 2
    return _round_up(query_tokens, GRAPH_Q_PADDING), _round_up(read, GRAPH_KV_PADDING), row


def padded(query_tokens, kv_tokens):
    """(query tokens, KV tokens, attention pairs) a graph step's kernels run on: queries padded
    to ``GRAPH_Q_PADDING``, the KV read from the cache (``kv_tokens`` less the step's own new
    ones) padded to ``GRAPH_KV_PADDING``, plus the padded queries. Ints or integer arrays (no
    conversion: the simulator asks once per step)."""
    read = kv_tokens - query_tokens
    read = read * (read > 0)
    qp = _round_up(query_tokens, GRAPH_Q_PADDING)
    kv = _round_up(read, GRAPH_KV_PADDING) + qp
    return qp, kv, qp * kv


def padded_steps(steps: list[dict]) -> list[dict]:
    """Step rows with the shape a graph step's kernels run on (``padded``; padding twice
    changes nothing): what a graph-mode fit is fitted on."""
    out = []
    for s in steps:
        q, kv, pairs = padded(s["query_tokens"], s["kv_tokens"])
        out.append({**s, "query_tokens": int(q), "kv_tokens": int(kv), "attention_pairs": int(pairs)})
    return out


def warmup_graph_shapes() -> list[Shape]:
    """The graphs the replay's warm-up (``calibration.warmup``) captured before a case: its
    prompts prefilled in one step, then its decode steps."""
    n, p = WARMUP_REQUESTS, WARMUP_PROMPT_TOKENS
    return [graph_shape(n * p, n * p, p)] + [graph_shape(n, n * (p + i), p + i)
                                             for i in range(1, WARMUP_NEW_TOKENS)]


def steps_from_log(path: Path, graph: bool = False) -> list[dict]:
    """Rows of a continuous-batching replay ``steps.csv`` with their measured duration; a step
    whose shape the run had not met before is a new shape: its (query, KV) attention plan
    (eager), or its graph (``graph``: CUDA-graph mode, ``graph_shape``; the warm-up's graphs
    were captured before the log starts)."""
    import csv

    out, seen = [], set(warmup_graph_shapes() if graph else ())
    with path.open() as f:
        for r in csv.DictReader(f):
            d = float(r["end_s"]) - float(r["schedule_s"])
            q, k = int(r["query_tokens"]), int(r["kv_tokens"])
            key = graph_shape(q, k, int(r["max_kv_tokens"])) if graph else packed_shape(q, k)
            new = key not in seen
            seen.add(key)
            if d > 0 and int(r["num_requests"]) > 0:
                out.append(dict(num_requests=int(r["num_requests"]), query_tokens=q,
                                kv_tokens=k, attention_pairs=q * k, new_shape=int(new),
                                duration_s=d, max_kv_tokens=int(r["max_kv_tokens"])))
    return out


def generate_step_shape(rows: int, padded_prompt_tokens: int, step: int) -> Shape:
    """The attention shape of step ``step`` of one ``generate`` call: the padded prefill (0),
    then one decode per further token over a context one longer each step."""
    s = padded_prompt_tokens
    return (rows, s, s) if step == 0 else (rows, 1, s + step)


def generate_step_shapes(rows: int, padded_prompt_tokens: int, num_steps: int) -> list[Shape]:
    return [generate_step_shape(rows, padded_prompt_tokens, j) for j in range(num_steps)]


def steps_from_generate(path: Path, variants: tuple[str, ...] = ("sync",)) -> list[dict]:
    """Rows of ``calibration/generate_steps.py``'s ``generate_steps.csv`` (in execution order:
    a shape is new the first time the process ran it)."""
    import csv

    out, seen = [], set()
    with path.open() as f:
        for r in csv.DictReader(f):
            rows, s, j = int(r["rows"]), int(r["padded_prompt_tokens"]), int(r["step"])
            if r["variant"] == "nosync":
                seen.update(generate_step_shapes(rows, s, int(r["new_tokens"])))
                continue
            key = generate_step_shape(rows, s, j)
            new = key not in seen
            seen.add(key)
            if r["variant"] in variants:
                out.append(dict(num_requests=rows, query_tokens=rows * key[1],
                                kv_tokens=rows * key[2], max_kv_tokens=key[2],
                                attention_pairs=rows * key[1] * key[2], new_shape=int(new),
                                duration_s=float(r["step_s"])))
    return out
