"""Synthetic multi-turn chat sessions (``workload.kind: conversation``), and the KV block
hashes their prompts share: a shared prefix (system prompt, few-shot template) with every
session that drew it, a session's history with its later turns."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from llmsim.errors import InputError
from llmsim.workload import config as wc
from llmsim.workload.draws import arrivals, lengths

_SESSION_BASE = 1 << 62  # session blocks' ids above every shared-prefix block's id
_BLOCKS = 1 << 32  # ids per prefix / per session


def conversation_frame(cfg: wc.ConversationWorkload, rng: np.random.Generator,
                       base_dir: Path) -> pd.DataFrame:
    n = cfg.num_sessions
    starts = arrivals(cfg.arrival, n, rng)
    turns = np.minimum(rng.geometric(1.0 / cfg.mean_turns, size=n), cfg.max_turns)
    total = int(turns.sum())
    messages = lengths(cfg.message_tokens, total, rng, base_dir, "prompt_tokens")
    outputs = lengths(cfg.output_tokens, total, rng, base_dir, "output_tokens")
    think = rng.exponential(cfg.mean_think_time_s, size=total)
    if cfg.shared_prefixes:
        w = np.array([p.weight for p in cfg.shared_prefixes])
        pick = rng.choice(len(w), size=n, p=w / w.sum())
        prefix_tokens = np.array([p.tokens for p in cfg.shared_prefixes])[pick]
    else:
        pick, prefix_tokens = np.full(n, -1), np.zeros(n, dtype=np.int64)
    rows = []
    first = np.concatenate([[0], np.cumsum(turns)[:-1]])
    for s in range(n):
        t, context = float(starts[s]), int(prefix_tokens[s])
        for k in range(int(turns[s])):
            i = int(first[s]) + k
            t += float(think[i]) if k else 0.0
            prompt = context + int(messages[i])
            if cfg.max_prompt_tokens and prompt > cfg.max_prompt_tokens:
                break
            rows.append((t, prompt, int(outputs[i]), s, k, int(pick[s]), int(prefix_tokens[s])))
            context = prompt + int(outputs[i])
    if not rows:
        raise InputError("workload: no turn fits max_prompt_tokens "
                         f"({cfg.max_prompt_tokens}): every session's first prompt is longer")
    df = pd.DataFrame(rows, columns=["arrival_s", "prompt_tokens", "output_tokens", "session",
                                     "turn", "shared_prefix", "shared_prefix_tokens"])
    df["service_class"], df["priority"] = cfg.service_class, cfg.priority
    return df.sort_values("arrival_s", kind="stable").reset_index(drop=True)


def conversation_hashes(df: pd.DataFrame, block_size: int) -> list[tuple[int, ...]]:
    """Each turn's block hashes over its prompt *and* answer (vLLM caches the blocks a request
    generates too, and the session's next turn continues them): blocks wholly inside the
    shared prefix carry that prefix's ids, the rest the session's own."""
    stream = df["stream"] if "stream" in df.columns else pd.Series(0, index=df.index)
    out: list[tuple[int, ...]] = []
    for st, s, pre, pre_tokens, p, o in zip(stream, df["session"], df["shared_prefix"],
                                            df["shared_prefix_tokens"], df["prompt_tokens"],
                                            df["output_tokens"]):
        if pd.isna(s):  # a row of another stream of a mix
            out.append(())
            continue
        shared = int(pre_tokens) // block_size if pre >= 0 else 0
        own = _SESSION_BASE + (int(st) * (1 << 20) + int(s)) * _BLOCKS
        n = (int(p) + int(o)) // block_size
        out.append(tuple(int(pre) * _BLOCKS + j if j < shared else own + j for j in range(n)))
    return out


def prompt_block_ids(df: pd.DataFrame, block_size: int) -> pd.DataFrame:
    """The frame with the trace format's prefix columns: each prompt's full blocks' ids at
    ``block_size`` tokens (the trace format names prompt blocks only: the answers' are dropped)."""
    ids = [list(h[:int(p) // block_size]) for h, p in
           zip(conversation_hashes(df, block_size), df["prompt_tokens"])]
    return df.assign(prefix_block_ids=ids, prefix_block_tokens=block_size)
