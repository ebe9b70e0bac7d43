"""The real engine's step cost, fitted from the committed runs, and the host speed of a session.

``hf_cb`` is fitted on the step logs of continuous-batching runs. ``hf_generate`` keeps the
shape the ``generate_steps.csv`` microbenchmark measured, levelled to the static runs: that
microbenchmark ran in one sitting on one host and the static runs' makespans spread widely
around what it predicts (calibration/README.md), so its level is the static runs' own, each
against its host's speed. A run's host speed is how fast the *other*
runs of its session (one replay invocation on one machine) ran against the fit, weighed by
``SESSION_WEIGHT``.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from calibration.cases import case_gpu, case_scenario, find_cases, load_case

# How much of a session's measured speed carries over to another run of it: the slope of a
# run's log speed on that of its session's other runs (measured: calibration/README.md).
# Taking the session's speed whole (1.0) over-corrects held-out runs; ignoring it (0.0) leaves
# whole slow sessions unexplained.
SESSION_WEIGHT = 0.7

# The shape of each engine's fitted step cost (``calibration.step_forms``), per GPU: each GPU's
# continuous batching keeps the form that predicted its held-out runs better (the scores are in
# calibration/README.md); ``generate`` keeps linear, the hinge left its static cases unchanged.
HINGE_GPUS = ("h200",)
# calibration runs that drive the engine past the range of the others (calibration/engine_grid)
GRID_PREFIXES = ("calib_grid_", "calib_graph_")
# validation runs that are only ever predicted, never fitted on (the engine at its defaults)
HELDOUT_PREFIX = "heldout_"


def cb_form(gpu: str) -> str:
    return "hinge" if gpu in HINGE_GPUS else "linear"


def fit_engine_profiles(root: Path, profiles: Path | None = None) -> list[Path]:
    """Fit ``engine_step_fit.json`` per (GPU, model): ``hf_cb`` from the step logs of every
    continuous-batching run under ``root`` (``calib_*`` and validation runs alike: more runs
    average out the engine's run-to-run drift; ``llmsim-lab validate`` refits without the case it
    predicts), ``hf_generate`` from the ``generate_steps.csv`` microbenchmark, levelled to the
    static runs under ``root``."""
    from calibration.engine_fit import fits_root

    src = fits_root()
    runs, static = step_runs((root,)), static_runs((root,))
    graph = step_runs((root,), "hf_cb_graph")
    pairs = set(runs) | set(graph) | {(p.parents[1].name, p.parent.name)
                                      for p in src.glob("*/*/generate_steps.csv")}
    return [write_fit(profiles or src, gpu, model, runs.get((gpu, model), []),
                      static=static.get((gpu, model), []), graph=graph.get((gpu, model), []),
                      donor_graph=graph_donors(graph, gpu, model))
            for gpu, model in sorted(pairs)]


def graph_donors(graph: dict[tuple[str, str], list[Path]], gpu: str, model: str
                 ) -> dict[str, list[Path]]:
    """The CUDA-graph runs of the other models on ``gpu`` (``step_runs(.., "hf_cb_graph")``)."""
    return {m: rs for (g, m), rs in graph.items() if g == gpu and m != model}


def _runs(roots: tuple[Path, ...], log: str, engine: str | None = None
          ) -> dict[tuple[str, str], list[Path]]:
    """Runs under ``roots`` (each once) that wrote ``log``, by (GPU, model); only those of one
    engine variant (``cases.run_engine``) when ``engine`` is given."""
    out: dict[tuple[str, str], list[Path]] = {}
    for root in dict.fromkeys(Path(r).resolve() for r in roots):
        for p in find_cases(root, include_calibration=True):
            if (p / log).exists():
                gpu, model, _ = run_info(p)
                if engine is None or run_variant(p) == engine:
                    out.setdefault((gpu, model), []).append(p)
    return out


def run_variant(run: Path) -> str:
    """The engine variant of a run (``cases.run_engine``), from the cached ``case.json`` read."""
    return _run_info(run, (run / "case.json").stat().st_mtime_ns)[3]


def run_info(run: Path) -> tuple[str, str, str | None]:
    """(GPU, model, session) of a run. ``validate`` asks for every run's once per case it
    predicts: each ``case.json`` is read once per file version."""
    return _run_info(run, (run / "case.json").stat().st_mtime_ns)[:3]


@functools.lru_cache(maxsize=4096)
def _run_info(run: Path, mtime_ns: int) -> tuple[str, str, str | None, str]:
    from calibration.cases import run_engine

    info = json.loads((run / "case.json").read_text())
    return case_gpu(run), info["case"]["model"], info.get("session"), run_engine(info)


def step_runs(roots: tuple[Path, ...], engine: str = "hf_cb"
              ) -> dict[tuple[str, str], list[Path]]:
    """Continuous-batching runs (they logged engine steps) of one engine variant: eager
    (``hf_cb``) or with CUDA graphs (``hf_cb_graph``)."""
    return _runs(roots, "steps.csv", engine)


def static_runs(roots: tuple[Path, ...]) -> dict[tuple[str, str], list[Path]]:
    """Static ``generate`` runs (they logged batches)."""
    return _runs(roots, "batches.csv")


def session(run: Path) -> str | None:
    """The replay session a run belongs to (``case.json`` ``session``; None if unrecorded)."""
    return run_info(run)[2]


def session_runs(run: Path, runs: list[Path]) -> list[Path]:
    """The other runs of ``run``'s session among ``runs``."""
    own, me = session(run), run.resolve()
    return [r for r in runs if own is not None and session(r) == own and r.resolve() != me]


def logged_steps(runs: list[Path]) -> list[dict]:
    """Every logged step of ``runs`` (each log parsed once per file version: ``validate``
    refits for every case from the same runs)."""
    return [s for p in runs
            for s in _parse_log(p / "steps.csv", (p / "steps.csv").stat().st_mtime_ns)]


@functools.lru_cache(maxsize=512)
def _parse_log(path: Path, mtime_ns: int) -> tuple[dict, ...]:
    from calibration.step_logs import steps_from_log

    # tagged with their run: a fit weighs runs, not steps, the same
    graph = run_variant(path.parent) == "hf_cb_graph"
    return tuple({**s, "run": str(path.parent)} for s in steps_from_log(path, graph))


def session_speed(runs: list[Path], fit_path: Path, engine: str = "hf_cb") -> float:
    """How much slower (> 1) than the ``engine`` fit at ``fit_path`` another run of the session
    that ran ``runs`` (of that engine variant) is expected to run (1.0 with no runs or no
    fit)."""
    from calibration.step_fit import host_scale

    fits = json.loads(fit_path.read_text()) if fit_path.exists() else {}
    if not runs or engine not in fits:
        return 1.0
    return host_scale(fits[engine], logged_steps(runs)) ** SESSION_WEIGHT


def write_fit(profiles: Path, gpu: str, model: str, runs: list[Path], generate: bool = True,
              static: list[Path] = (), graph: list[Path] = (),
              donor_graph: dict[str, list[Path]] | None = None) -> Path:
    """``engine_step_fit.json``: ``hf_cb`` from the eager ``runs``, ``hf_cb_graph`` from the
    CUDA-graph ``graph`` runs, ``hf_cb_parts`` from the forward-probe runs (``step_parts``),
    ``hf_cb_graph_parts`` from those and the graph runs (without graph runs of this model: their
    host part borrowed from another model's, ``donor_graph``: model -> its graph runs on this
    GPU); unless ``generate`` is off (a leave-one-out refit for a
    continuous-batching case needs only its own variant), ``hf_generate`` from the
    microbenchmark, levelled to the ``static`` runs."""
    from calibration.engine_fit import FIT_FILE, fits_root
    from calibration.graph_parts import graph_parts_fit
    from calibration.step_fit import fit_domain, fit_steps, with_beyond
    from calibration.step_forms import scaled
    from calibration.step_logs import padded_steps, steps_from_generate
    from calibration.step_parts import new_shape_cost, parts_fit

    fits = {}
    runs = [p for p in runs if not p.name.startswith(HELDOUT_PREFIX)]
    graph = [p for p in graph if not p.name.startswith(HELDOUT_PREFIX)]
    for engine, source in (("hf_cb", runs), ("hf_cb_graph", graph)):
        # the engine-grid runs extend the range (a part fitted past the others' range): folded
        # into one fit, their long steps bent the short steps' cost that every other run lives in
        main = [p for p in source if not p.name.startswith(GRID_PREFIXES)] or list(source)
        if source:
            # a graph capture is rare: measured apart (the shape-cost workload) where it was,
            # else estimated from the steps that captured one, never fitted as a term
            cost: float | str | None = None
            if engine == "hf_cb_graph":
                measured = new_shape_cost(gpu, model, graph=True)
                cost = "excess" if measured is None else measured
            steps, every = logged_steps(main), logged_steps(source)
            if engine == "hf_cb_graph":  # the kernels run the graph's padded shape
                raw, steps, every = every, padded_steps(steps), padded_steps(every)
            fit = fit_steps(steps, cb_form(gpu), cost)
            fixed = fit.get("new_shape_fixed_s")  # the part past the range keeps the same
            fits[engine] = with_beyond(fit, every, cb_form(gpu), new_shape_s=fixed)
            if engine == "hf_cb_graph":  # priced on padded shapes; its domain is the steps'
                fits[engine].update(graph_padded=True, domain=fit_domain(raw))
            if fixed is not None:
                fits[engine]["new_shape_source"] = ("median excess of the new-shape steps"
                                                    if cost == "excess" else "shape-cost runs")
            fits[engine]["source_runs"] = [f"{p.parent.name}/{p.name}" for p in source]
    parts = parts_fit(gpu, model)  # from parts runs: never a validation case
    if parts is not None:
        fits["hf_cb_parts"] = parts
        # graph mode: its kernels on padded shapes, the replay's host part from the graph runs
        capture = new_shape_cost(gpu, model, graph=True)
        gp = graph_parts_fit(parts, logged_steps(graph), capture)
        source = graph
        if gp is None:
            gp, source = _borrowed_graph_parts(gpu, model, parts, capture, donor_graph or {})
        if gp is not None:
            fits["hf_cb_graph_parts"] = {**gp, "source_runs": [f"{p.parent.name}/{p.name}"
                                                               for p in source]}
    gen = fits_root() / gpu / model / "generate_steps.csv"
    if generate and gen.exists():
        fits["hf_generate"] = fit_steps(steps_from_generate(gen), "linear")
        fits["hf_generate"]["source"] = f"{gpu}/{model}/generate_steps.csv"
    out = profiles / gpu / model / FIT_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(fits, indent=2) + "\n")
    if "hf_generate" in fits and static:
        level = static_level(profiles, static, runs)
        g = fits["hf_generate"] = scaled(fits["hf_generate"], level)
        g["static_level"] = level
        g["level_runs"] = [f"{p.parent.name}/{p.name}" for p in static]
        out.write_text(json.dumps(fits, indent=2) + "\n")
    return out


def _borrowed_graph_parts(gpu: str, model: str, parts: dict, capture: float | None,
                          donors: dict[str, list[Path]]) -> tuple[dict | None, list[Path]]:
    """``hf_cb_graph_parts`` of ``model`` with the replay host part of the donor model whose
    graph runs (never held-out ones) fit one (``graph_parts.borrowed_graph_parts``); the donor
    with the most runs first. (None, []) where no donor does."""
    from calibration.graph_parts import borrowed_graph_parts, graph_parts_fit
    from calibration.step_parts import new_shape_cost, parts_fit
    from llmsim.models.specs import resolve_model

    for donor, runs in sorted(donors.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        runs = [p for p in runs if not p.name.startswith(HELDOUT_PREFIX)]
        donor_parts = parts_fit(gpu, donor) if runs else None
        if donor_parts is None:
            continue
        fit = graph_parts_fit(donor_parts, logged_steps(runs),
                              new_shape_cost(gpu, donor, graph=True))
        if fit is not None:
            ratio = resolve_model(model).num_layers / resolve_model(donor).num_layers
            return borrowed_graph_parts(parts, fit, donor, capture, ratio), runs
    return None, []


def static_level(profiles: Path, static: list[Path], runs: list[Path]) -> float:
    """How long the ``static`` runs took against the ``hf_generate`` fit under ``profiles``,
    each simulated at its own session's speed (from ``runs``): the geometric mean over runs of
    measured / simulated time of every batch after the first (the makespan where a run is one
    batch). A fresh machine's first batch pays one-off kernel builds (calibration/README.md:
    the generate shape-cache probe) that a multiplier on every step would spread over all."""
    from calibration.engine_fit import FIT_FILE
    from calibration.fidelity import batch_durations, batch_errors
    from llmsim.simulation import simulate

    ratios = []
    for run in static:
        case = load_case(run)
        sc = case_scenario(case)
        fit_path = profiles / case.gpu / sc.model / FIT_FILE
        speed = session_speed(session_runs(run, runs), fit_path)  # the eager runs' speed
        # validate levels every static case from nearly the same runs and fit: a run's ratio
        # is kept per (run, fit, speed) rather than simulated again
        key = (str(run.resolve()), (run / "requests.csv").stat().st_mtime_ns,
               fit_path.read_text(), speed)
        if key not in _RATIOS:
            latency = sc.latency.model_copy(update={"fits_dir": str(profiles),
                                                    "host_scale": speed})
            sim = simulate(sc.model_copy(update={"latency": latency})).requests
            measured, errs = batch_durations(case), batch_errors(case, sim)
            if measured is not None and errs is not None and len(measured) > 1:
                _RATIOS[key] = float(measured[1:].sum() / (measured[1:] * (1 + errs[1:])).sum())
            else:
                _RATIOS[key] = case.requests["e2e_s"].max() / sim["e2e_s"].max()
        ratios.append(_RATIOS[key])
    return float(np.exp(np.mean(np.log(ratios))))


_RATIOS: dict[tuple, float] = {}
