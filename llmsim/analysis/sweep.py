"""Sweeps: a grid of scenario variants, run in parallel, one tidy table out.

A sweep file names a base scenario and a grid of ``field.path: [values]`` axes (any scenario
field: policy, arrival rate, SLO scale, seed, ...). Every point is validated before anything
runs. Each run's results go to ``OUT/runs/<hash>/`` keyed by a hash of its resolved scenario and
written atomically (temp + rename), so an interrupted sweep, re-run, skips finished points and
never reads a partial file. ``OUT/sweep.parquet`` holds one row per run: its axis values and
every summary metric, flattened.
"""
from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import Field, ValidationError

from llmsim.config_base import StrictModel
from llmsim.errors import InputError
from llmsim.scenario import Scenario, load_scenario
from llmsim.yaml_io import read_yaml


class SweepConfig(StrictModel):
    scenario: str
    grid: dict[str, list[Any]] = Field(min_length=1)
    out: str | None = None


def load_sweep(path: Path) -> tuple[SweepConfig, Path]:
    data = read_yaml(path, "sweep file")
    try:
        cfg = SweepConfig.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        raise InputError(f"{path}: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None
    empty = [k for k, v in cfg.grid.items() if not v]
    if empty:
        raise InputError(f"{path}: grid axis {empty[0]} has no values")
    return cfg, path.resolve().parent


def _override(key: str, value: Any) -> str:
    return f"{key}={json.dumps(value)}"


def points(cfg: SweepConfig, base_dir: Path) -> list[tuple[dict, Scenario, str]]:
    """Every grid point as (axis values, validated scenario, hash); one bad point fails all."""
    scenario_path = (base_dir / cfg.scenario).resolve()
    axes = list(cfg.grid)
    out = []
    for values in itertools.product(*(cfg.grid[a] for a in axes)):
        point = dict(zip(axes, values))
        try:
            sc = load_scenario(scenario_path, [_override(k, v) for k, v in point.items()])
        except InputError as e:
            raise InputError(f"sweep point {point}: {e}") from None
        for k in axes:  # an axis that sets nothing real (a typo in a free-form dict) is an error
            if k.split(".")[0] not in Scenario.model_fields:
                raise InputError(f"sweep: unknown axis {k!r}")
        resolved = json.dumps(sc.model_dump(mode="json"), sort_keys=True)
        digest = hashlib.sha256((resolved + str(sc.base_dir)).encode()).hexdigest()[:16]
        out.append((point, sc, digest))
    return out


def is_finished(run_dir: Path) -> bool:
    """A point is done when its folder holds its requests and a summary that parses (a folder
    cut short by a crash, or an empty file, is not)."""
    try:
        json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return False
    return (run_dir / "requests.parquet").is_file()


def _die_with_parent() -> None:
    """A worker process ends when the sweep that started it does, even if it was killed."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _run_point(sc: Scenario, run_dir: str) -> str:
    """Simulate one point and publish its results atomically (a worker process)."""
    from llmsim.simulation import simulate

    res = simulate(sc)
    final = Path(run_dir)
    tmp = final.with_name(f".{final.name}.writing-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    res.requests.to_parquet(tmp / "requests.parquet", index=False)
    summary = {**res.summary, "provenance": res.provenance}
    (tmp / "summary.json").write_text(json.dumps(summary, sort_keys=True, default=float))
    if is_finished(final):  # another worker (or process) published it meanwhile: same result
        shutil.rmtree(tmp, ignore_errors=True)
        return run_dir
    if final.exists():  # a partial directory left by an interrupted run
        shutil.rmtree(final, ignore_errors=True)
    try:
        os.replace(tmp, final)  # a complete run directory appears in one rename
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not is_finished(final):
            raise
    return run_dir


def _flatten(summary: dict) -> dict:
    """A run's summary as one flat row (``ttft_s.p90``, ``provenance.seed``); a list value (an
    SLO range) as its JSON text, so every column keeps one type across runs."""
    row = pd.json_normalize(summary, sep=".").iloc[0].to_dict()
    return {k: json.dumps(v) if isinstance(v, list) else v for k, v in row.items()}


@contextlib.contextmanager
def _dask_client(address: str) -> Iterator[Any]:
    """A client of the scheduler at ``address``, or of a cluster started here for ``local`` /
    ``local:N`` (N worker processes, default one per core), closed on the way out."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise InputError("--cluster needs dask.distributed: pip install 'llmsim[cluster]'") from None
    if address == "local" or address.startswith("local:"):
        n = address.partition(":")[2]
        if n and not (n.isdigit() and int(n) > 0):
            raise InputError(f"--cluster {address}: local:N needs a positive worker count")
        with LocalCluster(n_workers=int(n) if n else os.cpu_count() or 1, threads_per_worker=1,
                          processes=True, dashboard_address=None) as lc, Client(lc) as client:
            yield client
        return
    try:
        client = Client(address, timeout="10s")
    except (OSError, TimeoutError) as e:
        raise InputError(f"--cluster {address}: the Dask scheduler does not answer ({e})") from None
    with client:
        yield client


def run_sweep(cfg: SweepConfig, base_dir: Path, out: Path, workers: int | None = None,
              progress: Callable[[int, int], None] | None = None,
              cluster: str | None = None) -> tuple[pd.DataFrame, int]:
    """Returns the table and how many points were simulated now (the rest were already done).
    ``cluster``: a Dask scheduler address; its workers must see ``out`` (a shared file system)."""
    pts = points(cfg, base_dir)
    runs = out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    unique = {h: sc for _, sc, h in pts}  # a grid may name one point twice: simulate it once
    todo = [(sc, str(runs / h)) for h, sc in unique.items() if not is_finished(runs / h)]
    done = len(unique) - len(todo)
    if progress:
        progress(done, len(unique))
    if todo and cluster:
        from distributed import as_completed as dask_completed

        with _dask_client(cluster) as client:
            for f in dask_completed([client.submit(_run_point, sc, d, pure=False) for sc, d in todo]):
                f.result()
                done += 1
                if progress:
                    progress(done, len(unique))
    elif todo:
        if workers == 1:
            for sc, d in todo:
                _run_point(sc, d)
                done += 1
                if progress:
                    progress(done, len(unique))
        else:
            with ProcessPoolExecutor(max_workers=workers, initializer=_die_with_parent) as pool:
                for f in as_completed([pool.submit(_run_point, sc, d) for sc, d in todo]):
                    f.result()
                    done += 1
                    if progress:
                        progress(done, len(unique))
    rows = []
    for point, _, h in pts:
        summary = json.loads((runs / h / "summary.json").read_text())
        rows.append({**{f"axis.{k}": json.dumps(v) if isinstance(v, (dict, list)) else v
                        for k, v in point.items()}, "run": h, **_flatten(summary)})
    table = pd.DataFrame(rows)
    tmp = out / "sweep.parquet.tmp"
    table.to_parquet(tmp, index=False)
    os.replace(tmp, out / "sweep.parquet")
    return table, len(todo)


def load_sweep_results(out: Path) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """The sweep table and, per run hash, its request records (for analysis notebooks)."""
    table = pd.read_parquet(out / "sweep.parquet")
    reqs = {h: pd.read_parquet(out / "runs" / h / "requests.parquet") for h in table["run"]}
    return table, reqs
