"""Generates traces/uellm_alpaca_100.csv: UELLM's closed-batch experiment (policies.md §6.2, §11.2).

100 Alpaca-like queries at t = 0 with the tiered absolute deadlines of the authors' `deal.py`:
[0:20] U{220..250} s, [20:40] U{180..220}, [40:60] U{150..180}, [60:80] U{100..120},
[80:100] U{90..100}. Lengths [ASSUMPTION]: prompts lognormal median 69 tokens (Alpaca mean 83.7),
outputs lognormal median 120 tokens (the repo uses character counts; ~4 chars per token).
    python scenarios/papers/make_uellm_trace.py
"""
from pathlib import Path

import numpy as np
import pandas as pd

TIERS = [(220, 250), (180, 220), (150, 180), (100, 120), (90, 100)]


def main(seed: int = 11) -> Path:
    rng = np.random.default_rng(seed)
    n = 100
    prompt = np.clip(np.rint(69 * np.exp(0.62 * rng.standard_normal(n))), 4, 1024).astype(int)
    output = np.clip(np.rint(120 * np.exp(0.8 * rng.standard_normal(n))), 1, 1024).astype(int)
    deadline = np.concatenate([rng.integers(lo, hi + 1, size=20) for lo, hi in TIERS])
    df = pd.DataFrame({"arrival_s": 0.0, "prompt_tokens": prompt, "output_tokens": output,
                       "deadline_s": deadline.astype(float)})
    out = Path(__file__).resolve().parents[2] / "traces" / "uellm_alpaca_100.csv"
    df.to_csv(out, index=False, float_format="%.6f")
    return out


if __name__ == "__main__":
    print("wrote", main())
