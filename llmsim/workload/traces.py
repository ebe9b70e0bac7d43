"""Trace readers. Every reader returns a frame with ``arrival_s, prompt_tokens, output_tokens``
(+ optional llmsim columns), arrivals relative to the first request, validated row by row."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from llmsim.errors import InputError

REQUIRED = ["arrival_s", "prompt_tokens", "output_tokens"]
OPTIONAL = ["service_class", "priority", "ttft_slo_s", "tpot_slo_s", "deadline_s",
            "predicted_output_tokens"]
SLO_COLUMNS = ["ttft_slo_s", "tpot_slo_s", "deadline_s"]
MAX_TOKENS = 2**31 - 1  # per request; beyond this a count is a data error, not a request
MOONCAKE_BLOCK_TOKENS = 512


def _check_file(path: Path) -> None:
    if not path.exists():
        hint = ("; the real public traces are not in the repository: put the ../shared/traces "
                "folder beside the checkout (traces/README.md says where each comes from)"
                if "shared/traces" in path.as_posix() else "")
        raise InputError(f"{path}: trace file not found{hint}")
    if not path.is_file():
        raise InputError(f"{path}: is a directory, not a trace file" if path.is_dir()
                         else f"{path}: not a regular file")


def _numbers(df: pd.DataFrame, col: str, path: Path, what: str) -> pd.Series:
    """``col`` as floats; a cell that is not a number is an error naming its row."""
    v = pd.to_numeric(df[col], errors="coerce")
    bad = v.isna() & df[col].notna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(f"{path} row {i + 2}: {what} {df[col].iloc[i]!r} is not a number")
    return v


def _read_csv(path: Path) -> pd.DataFrame:
    _check_file(path)
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not a readable CSV ({str(e).splitlines()[0]})") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read the trace ({e.strerror or e})") from None


def _need(df: pd.DataFrame, path: Path, cols: list[str]) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}; "
                         f"found {', '.join(map(str, df.columns))}")


def read_llmsim(path: Path) -> pd.DataFrame:
    df = _read_csv(path)
    _need(df, path, REQUIRED)
    out = df[[c for c in REQUIRED + OPTIONAL if c in df.columns]].copy()
    if "prefix_ids" in df.columns:  # prefix caching: space-separated block ids per row
        _need(df, path, ["prefix_block_tokens"])
        out["prefix_block_ids"] = [_ids(v, path, i) for i, v in enumerate(df["prefix_ids"])]
        size = _numbers(df, "prefix_block_tokens", path, "prefix_block_tokens")
        # a row without prefix ids has no blocks: its block size is not read (0 or empty)
        has = out["prefix_block_ids"].map(len).to_numpy() > 0
        bad = has & (~(size >= 1) | (size != size.round())).to_numpy()
        if bad.any():
            i = int(bad.argmax())
            raise InputError(f"{path} row {i + 2}: prefix_block_tokens must be a positive "
                             f"integer, got {df['prefix_block_tokens'].tolist()[i]!r}")
        out["prefix_block_tokens"] = size.where(has, 0).astype("int64")
    return out


def _ids(cell: object, path: Path, i: int) -> list[int]:
    """A ``prefix_ids`` cell: block ids separated by spaces (empty: no prefix)."""
    if cell is None or (isinstance(cell, float) and np.isnan(cell)):
        return []
    try:
        ids = [int(x) for x in str(cell).split()]
    except ValueError:
        ids = [-1]
    if any(h < 0 for h in ids):
        raise InputError(f"{path} row {i + 2}: prefix_ids must be non-negative integers "
                         f"separated by spaces, got {str(cell)[:60]!r}")
    return ids


def read_azure(path: Path) -> pd.DataFrame:
    df = _read_csv(path)
    _need(df, path, ["TIMESTAMP", "ContextTokens", "GeneratedTokens"])
    ts = pd.to_datetime(df["TIMESTAMP"], format="%Y-%m-%d %H:%M:%S.%f", errors="coerce")
    bad = ts.isna()
    if bad.any():
        raise InputError(f"{path} row {int(np.flatnonzero(bad)[0]) + 2}: TIMESTAMP "
                         f"{df['TIMESTAMP'][bad].iloc[0]!r} is not a timestamp")
    secs = (ts - ts.iloc[0]).dt.total_seconds()
    return pd.DataFrame({"arrival_s": secs, "prompt_tokens": df["ContextTokens"],
                         "output_tokens": df["GeneratedTokens"]})


def read_mooncake(path: Path) -> pd.DataFrame:
    _check_file(path)
    try:
        df = pd.read_json(path, lines=True)
    except ValueError as e:
        raise InputError(f"{path}: not JSON lines ({str(e).splitlines()[0]})") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read the trace ({e.strerror or e})") from None
    _need(df, path, ["timestamp", "input_length", "output_length"])
    ms = _numbers(df, "timestamp", path, "timestamp")
    out = pd.DataFrame({"arrival_s": ms / 1000.0, "prompt_tokens": df["input_length"],
                        "output_tokens": df["output_length"]})
    if "hash_ids" in df.columns:  # prefix-block ids, 512 tokens a block (PROVENANCE)
        out["prefix_block_ids"] = df["hash_ids"]
        out["prefix_block_tokens"] = MOONCAKE_BLOCK_TOKENS
    return out


def read_burstgpt(path: Path) -> pd.DataFrame:
    df = _read_csv(path)
    _need(df, path, ["Timestamp", "Request tokens", "Response tokens"])
    ts = _numbers(df, "Timestamp", path, "Timestamp")
    keep = (df["Response tokens"] != 0).to_numpy()  # 0 response tokens = a failed request
    df, ts = df[keep], ts[keep]
    return pd.DataFrame({"arrival_s": ts,
                         "prompt_tokens": df["Request tokens"],
                         "output_tokens": df["Response tokens"]}).reset_index(drop=True)


def read_sharegpt_lengths(path: Path) -> pd.DataFrame:
    """ShareGPT first-turn lengths (no timestamps): lengths only, for empirical resampling."""
    df = _read_csv(path)
    _need(df, path, ["prompt_tokens_llama3", "output_tokens_llama3"])
    df = df[(df["prompt_tokens_llama3"] > 0) & (df["output_tokens_llama3"] > 0)]
    return pd.DataFrame({"arrival_s": 0.0, "prompt_tokens": df["prompt_tokens_llama3"],
                         "output_tokens": df["output_tokens_llama3"]}).reset_index(drop=True)


READERS = {"llmsim": read_llmsim, "azure": read_azure, "mooncake": read_mooncake,
           "burstgpt": read_burstgpt, "sharegpt_lengths": read_sharegpt_lengths}


def read_trace(path: str | Path, fmt: str) -> pd.DataFrame:
    path = Path(path)
    _check_file(path)
    df = READERS[fmt](path)
    validate(df, path, check_order=fmt != "sharegpt_lengths")
    if "prefix_block_ids" in df.columns:
        _check_prefix_ids(df, path)
    df = df.astype({"prompt_tokens": "int64", "output_tokens": "int64"})
    df["arrival_s"] = df["arrival_s"].astype(float) - (float(df["arrival_s"].iloc[0]) if len(df) else 0.0)
    return df.reset_index(drop=True)


def validate(df: pd.DataFrame, path: Path, check_order: bool = True) -> None:
    """One clear error naming the first bad row (file line numbers, header = line 1)."""
    if df.empty:
        raise InputError(f"{path}: the trace has no requests")
    for col in ("prompt_tokens", "output_tokens"):
        v = pd.to_numeric(df[col], errors="coerce")
        bad = v.isna() | ~(v >= 1) | ~(v <= MAX_TOKENS) | (v != np.floor(v))
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(f"{path} row {i + 2}: {col} must be an integer from 1 to "
                             f"{MAX_TOKENS}, got {df[col].iloc[i]!r}")
    t = pd.to_numeric(df["arrival_s"], errors="coerce")
    if (~np.isfinite(t)).any():
        i = int(np.flatnonzero(~np.isfinite(t.to_numpy()))[0])
        raise InputError(f"{path} row {i + 2}: arrival_s is missing or not a finite number, "
                         f"got {df['arrival_s'].iloc[i]!r}")
    for col in SLO_COLUMNS:  # empty = the scenario's SLO; otherwise a positive budget
        if col in df.columns:
            v = _numbers(df, col, path, col)
            bad = v.notna() & ~(v > 0)
            if bad.any():
                i = int(np.flatnonzero(bad.to_numpy())[0])
                raise InputError(f"{path} row {i + 2}: {col} must be a positive number of "
                                 f"seconds, got {df[col].iloc[i]!r}")
    if "predicted_output_tokens" in df.columns:  # empty = no prediction for that row
        v = _numbers(df, "predicted_output_tokens", path, "predicted_output_tokens")
        bad = v.notna() & (~(v >= 1) | ~(v <= MAX_TOKENS) | (v != np.floor(v)))
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(f"{path} row {i + 2}: predicted_output_tokens must be an integer "
                             f"from 1 to {MAX_TOKENS} or empty, got "
                             f"{df['predicted_output_tokens'].iloc[i]!r}")
    if "priority" in df.columns:
        v = _numbers(df, "priority", path, "priority")
        bad = v.notna() & ((v != np.floor(v)) | ~np.isfinite(v))
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(f"{path} row {i + 2}: priority must be an integer, "
                             f"got {df['priority'].iloc[i]!r}")
    if check_order:
        dec = np.flatnonzero(np.diff(t.to_numpy()) < 0)
        if len(dec):
            raise InputError(f"{path} row {int(dec[0]) + 3}: arrival_s goes backwards "
                             f"({t.iloc[dec[0] + 1]} after {t.iloc[dec[0]]}); sort the trace")
    if "service_class" in df.columns:
        ok = df["service_class"].isin(["latency_sensitive", "best_effort"])
        if not ok.all():
            i = int(np.flatnonzero(~ok.to_numpy())[0])
            raise InputError(f"{path} row {i + 2}: service_class must be latency_sensitive or "
                             f"best_effort, got {df['service_class'].iloc[i]!r}")


def _check_prefix_ids(df: pd.DataFrame, path: Path) -> None:
    """Each row's prefix-block ids: a list of non-negative integers."""
    for i, ids in enumerate(df["prefix_block_ids"]):
        if not isinstance(ids, list) or not all(
                isinstance(h, int) and not isinstance(h, bool) and h >= 0 for h in ids):
            raise InputError(f"{path} row {i + 1}: hash_ids must be a list of non-negative "
                             f"integers, got {ids!r}"[:200])


def prefix_hashes(ids: list[int], source_tokens: int, block_size: int,
                  prompt_tokens: int) -> tuple[int, ...]:
    """A prompt's block hashes at the simulator's block size from a trace's prefix-block ids of
    ``source_tokens`` tokens each: every source block splits into ``source_tokens //
    block_size`` blocks (their own ids, so equal source ids give equal chains); only the
    prompt's full blocks are kept."""
    k = source_tokens // block_size
    n = min(prompt_tokens // block_size, len(ids) * k)
    return tuple(ids[j // k] * k + j % k for j in range(n))


def write_llmsim(df: pd.DataFrame, path: str | Path) -> None:
    cols = [c for c in REQUIRED + OPTIONAL if c in df.columns]
    out = df[cols]
    if "prefix_block_ids" in df.columns:  # the prefix ids travel too
        out = out.assign(prefix_ids=[" ".join(map(str, ids)) if isinstance(ids, list) else ""
                                     for ids in df["prefix_block_ids"]],
                         prefix_block_tokens=df["prefix_block_tokens"])
    out.to_csv(path, index=False, float_format="%.6f")
