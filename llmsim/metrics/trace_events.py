"""The run's steps as a Chrome / Perfetto trace (``--trace-events``): open ``trace.json`` in
ui.perfetto.dev or chrome://tracing. One process per instance, one slice per step (or fused
decode run), and counters for running and waiting requests and KV blocks in use."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd


def _kind(prefill: np.ndarray, decode: np.ndarray) -> np.ndarray:
    return np.where(prefill == 0, "decode", np.where(decode == 0, "prefill", "mixed"))


def write_trace(steps: pd.DataFrame, path: Path, title: str) -> None:
    """Trace Event Format, written row by row (no list of every event in memory)."""
    kinds = _kind(steps["num_prefill_tokens"].to_numpy(), steps["num_decode_seqs"].to_numpy())
    with path.open("w") as f:
        f.write('{"displayTimeUnit": "ms", "otherData": ' + json.dumps({"scenario": title})
                + ', "traceEvents": [\n')
        first = True

        def put(ev: dict) -> None:
            nonlocal first
            f.write(("" if first else ",\n") + json.dumps(ev, separators=(",", ":")))
            first = False

        roles = steps.groupby("instance")["role"].first() if len(steps) else pd.Series()
        for inst, role in roles.items():
            put({"ph": "M", "name": "process_name", "pid": int(inst),
                 "args": {"name": f"instance {inst} ({role})"}})
            put({"ph": "M", "name": "process_sort_index", "pid": int(inst),
                 "args": {"sort_index": int(inst)}})
        cols = ["instance", "start_s", "duration_s", "num_iterations", "num_prefill_tokens",
                "num_decode_seqs", "num_running", "num_waiting", "kv_used_blocks"]
        for row, kind in zip(steps[cols].itertuples(index=False), kinds):
            pid, ts = int(row.instance), round(row.start_s * 1e6, 3)
            name = kind if row.num_iterations == 1 else f"{kind} x{row.num_iterations}"
            put({"ph": "X", "name": name, "cat": kind, "pid": pid, "tid": 0, "ts": ts,
                 "dur": round(row.duration_s * 1e6, 3),
                 "args": {"prefill_tokens": int(row.num_prefill_tokens),
                          "decode_seqs": int(row.num_decode_seqs),
                          "iterations": int(row.num_iterations)}})
            put({"ph": "C", "name": "requests", "pid": pid, "ts": ts,
                 "args": {"running": int(row.num_running), "waiting": int(row.num_waiting)}})
            put({"ph": "C", "name": "kv_used_blocks", "pid": pid, "ts": ts,
                 "args": {"blocks": int(row.kv_used_blocks)}})
        f.write("\n]}\n")
