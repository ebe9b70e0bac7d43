"""The profiled cost model's held-out errors, pooled per (GPU, engine, phase) over every model
profiled on that GPU: what ``llmsim compare --cost-model-error`` resamples to put the cost
model's own error into a comparison. Writes ``llmsim/profiles/<gpu>/_residuals/<engine>.json``.

    llmsim-lab residuals
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from calibration.overhead_fit import available, report
from llmsim.latency.profiled import load_profile, profiles_root

ENGINES = ("kernels", "hf_eager")


def pooled(gpu: str, engine: str, root: Path) -> dict:
    """Relative errors (predicted / measured - 1) of the held-out steps, per phase."""
    frames, models = [], []
    for g, model in available(root):
        if g != gpu:
            continue
        load_profile.cache_clear()
        try:
            frames.append(report(gpu, model, root, engine=engine))
            models.append(model)
        except (FileNotFoundError, KeyError):  # a profile without this engine's steps
            continue
    df = pd.concat(frames, ignore_index=True)
    return {"gpu": gpu, "engine": engine, "models": models,
            "relative_errors": {ph: [round(float(e), 5) for e in g["profiled_err"]]
                                for ph, g in df.groupby("phase")},
            "definition": "profiled step time / measured step time - 1, held-out split"}


def main() -> None:
    root = profiles_root()
    for gpu in sorted({g for g, _ in available(root)}):
        for engine in ENGINES:
            out = root / gpu / "_residuals" / f"{engine}.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            info = pooled(gpu, engine, root)
            out.write_text(json.dumps(info, indent=1) + "\n")
            n = {ph: len(v) for ph, v in info["relative_errors"].items()}
            print(f"wrote {out}: {n}")


if __name__ == "__main__":
    main()
