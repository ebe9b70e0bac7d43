"""Generates traces/uellm_chatglm2/run{1..8}.csv: UELLM's closed-batch experiment from the
authors' own inputs (HYIUYOU/UELLM at 521d043; policies.md §6.2, §11.2).

- The 100 queries are the repo's ``dataset/output.json``: Chinese Alpaca instructions with an
  empty input. Prompt tokens: ChatGLM2-6B's tokenizer (the repo's ``chatglm2-6b/tokenizer.model``)
  on the instruction alone, as ``chat_batch`` sends it with no history, + its 2 prefix tokens.
- The profile SLO-ODBS sorts, groups and caps by (``predicted_output_tokens``) is what the
  experiments' data file held (``deal.py``: ``len(output)``), the character count of each query's
  reference answer in Chinese Alpaca (``dataset/alpaca_data_zh_output.json``; its first three
  entries were already converted to numbers there, their answers are counted from
  Chinese-LLaMA-Alpaca's ``alpaca_data_zh_51k.json``: ``FIRST_THREE``). Every group maximum the
  UELLM-all logs print (53, 104, 145, 184, 198, 228, 162, 197, 362, 709) is one of these counts.
  The code uses the count as a number of tokens (``max_length``); so does llmsim.
- Answer lengths: ``dataset/output_2_list.py`` holds eight runs of ChatGLM2-6B answering the same
  100 queries one at a time (sampled: top-p 0.7, temperature 0.95), each answer's token count;
  run k is ``output_tokens`` of ``run{k}.csv``: one served run's true answer lengths each.
- Deadlines: the tiers of ``dataset/deal.py`` ([0:20] U{220..250} s, [20:40] U{180..220},
  [40:60] U{150..180}, [60:80] U{100..120}, [80:100] U{90..100}), drawn with a fixed seed.

Needs a checkout of the repo and ``pip install sentencepiece`` (not a project dependency):
    python scenarios/papers/make_uellm_trace.py --repo /path/to/UELLM
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

TIERS = [(220, 250), (180, 220), (150, 180), (100, 120), (90, 100)]
COMMIT = "521d043"
FIRST_THREE = [230, 241, 176]  # characters of the answers to queries 0-2 (see above)


def _show(repo: Path, path: str) -> bytes:
    return subprocess.run(["git", "-C", str(repo), "show", f"{COMMIT}:{path}"], check=True,
                          capture_output=True).stdout


def profile_runs(text: str, n: int) -> list[list[int]]:
    """The answer-length runs logged in ``output_2_list.py``: blocks of ``n`` shapes, repeats
    (one block is another's copy plus a second pass) dropped, in file order."""
    runs: list[list[int]] = []
    for block in re.findall(r'= """(.*?)"""', text, re.S):
        counts = [int(x) for x in re.findall(r"torch\.Size\(\[1, (\d+)\]\)", block)]
        if len(counts) == n and counts not in runs:
            runs.append(counts)
    return runs


def main(repo: Path, seed: int = 11) -> list[Path]:
    import sentencepiece as spm  # only to regenerate the traces

    queries = json.loads(_show(repo, "dataset/output.json"))
    runs = profile_runs(_show(repo, "dataset/output_2_list.py").decode(), len(queries))
    answers = json.loads(_show(repo, "dataset/alpaca_data_zh_output.json"))
    if [a["instruction"] for a in answers] != [q["instruction"] for q in queries]:
        raise SystemExit("the answer file's queries are not output.json's: the repo changed")
    chars = FIRST_THREE + [len(a["output"]) for a in answers[3:]]
    with tempfile.NamedTemporaryFile(suffix=".model") as f:
        f.write(_show(repo, "chatglm2-6b/tokenizer.model"))
        f.flush()
        sp = spm.SentencePieceProcessor(model_file=f.name)
        prompt = [len(sp.encode(q["instruction"])) + 2 for q in queries]
    rng = np.random.default_rng(seed)
    deadline = np.concatenate([rng.integers(lo, hi + 1, size=20) for lo, hi in TIERS])
    out_dir = Path(__file__).resolve().parents[2] / "traces" / "uellm_chatglm2"
    out_dir.mkdir(exist_ok=True)
    written = []
    for k, served in enumerate(runs, start=1):
        df = pd.DataFrame({"arrival_s": 0.0, "prompt_tokens": prompt, "output_tokens": served,
                           "predicted_output_tokens": chars,
                           "deadline_s": deadline.astype(float)})
        path = out_dir / f"run{k}.csv"
        df.to_csv(path, index=False, float_format="%.6f")
        written.append(path)
    return written


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", type=Path, required=True, help="a git checkout of HYIUYOU/UELLM")
    for p in main(ap.parse_args().repo):
        print("wrote", p)
