"""Where a run's numbers come from: the llmsim that made them, the exact scenario, the seed."""
from __future__ import annotations

import hashlib
import platform
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import llmsim


@cache
def git_commit() -> str | None:
    """The commit of the checkout llmsim runs from (with ``+dirty`` if it has changes), or None
    for an installed package outside any checkout."""
    here = Path(llmsim.__file__).resolve().parent
    try:
        head = subprocess.run(["git", "-C", str(here), "rev-parse", "--show-toplevel", "HEAD"],
                              capture_output=True, text=True, timeout=5)
        if head.returncode != 0:
            return None
        top, commit = head.stdout.split()
        if here.parent != Path(top):  # some other repository that happens to contain us
            return None
        dirty = subprocess.run(["git", "-C", top, "status", "--porcelain", "--untracked-files=no",
                                "--", "llmsim"], capture_output=True, text=True, timeout=5)
        return commit + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def provenance(scenario_yaml: str, name: str, seed: int, wall_s: float) -> dict[str, Any]:
    """What a reader of the results needs to reproduce them (``wall_s`` aside)."""
    return {
        "llmsim_version": llmsim.__version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "scenario_name": name,
        "scenario_sha256": hashlib.sha256(scenario_yaml.encode()).hexdigest(),
        "seed": seed,
        "wall_s": wall_s,
    }
