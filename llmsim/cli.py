"""The ``llmsim`` command line: a thin layer over the library, no logic of its own."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from llmsim.errors import InputError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Discrete-event simulator of LLM inference serving clusters.")
workload_app = typer.Typer(no_args_is_help=True, help="Workload utilities.")
app.add_typer(workload_app, name="workload")
calibration_app = typer.Typer(no_args_is_help=True,
                              help="Measured GPU profiles: fit the framework terms, report errors.")
app.add_typer(calibration_app, name="calibration")
console = Console()
err = Console(stderr=True)

SCENARIO_ARG = typer.Argument(None, help="scenario YAML (default: the embedded quickstart)")
SET_OPT = typer.Option(None, "--set", help="override a field: key.path=value (repeatable)")


def _fail(msg: str) -> None:
    err.print(f"[bold red]error:[/] {msg}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


@app.command()
def run(scenario: Optional[Path] = SCENARIO_ARG,
        out: Path = typer.Option(Path("runs/latest"), "--out", help="results directory"),
        set_: Optional[list[str]] = SET_OPT,
        plots: bool = typer.Option(True, help="write PNG plots"),
        progress: bool = typer.Option(True, help="progress bar on long runs")) -> None:
    """Simulate a scenario and write requests.csv, steps.csv, summary.json, plots."""
    from llmsim.metrics.output import summary_rows, write_results
    from llmsim.scenario import load_scenario
    from llmsim.simulation import simulate

    try:
        sc = load_scenario(scenario, set_ or [])
        started = time.perf_counter()
        with _Progress(enabled=progress and sys.stderr.isatty()) as bar:
            res = simulate(sc, progress=bar.update)
        wall_s = time.perf_counter() - started
        paths = write_results(res, out, plots=plots)
    except InputError as e:
        _fail(str(e))
    c = sc.cluster
    layout = (f"{c.num_instances} x TP{c.tp}" if c.topology == "colocated" else
              f"P {c.prefill.num_instances} x TP{c.prefill.tp} + D {c.decode.num_instances} x "
              f"TP{c.decode.tp} ({sc.decode_policy.kind})")
    table = Table(title=f"llmsim: {sc.name} · {sc.policy.kind} · {layout} · "
                        f"{res.summary['num_requests']} requests")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in summary_rows(res.summary):
        table.add_row(k, v)
    console.print(table)
    console.print(f"simulated {res.summary['makespan_s']:.1f} s in {wall_s:.2f} s wall; "
                  f"wrote {len(paths)} files to {out}/")


@app.command()
def check(scenario: Optional[Path] = SCENARIO_ARG, set_: Optional[list[str]] = SET_OPT) -> None:
    """Validate a scenario (config, hardware fit, workload) without running it."""
    from llmsim.scenario import load_scenario
    from llmsim.simulation import load_requests, make_latency, resolve_hardware

    try:
        sc = load_scenario(scenario, set_ or [])
        hw = resolve_hardware(sc)
        make_latency(sc, hw)
        reqs = load_requests(sc)
    except InputError as e:
        _fail(str(e))
    console.print(f"ok: {sc.name}: {len(reqs)} requests, policy {sc.policy.kind}, "
                  f"{sc.cluster.num_instances} x {hw.model.name} on {sc.cluster.tp} x {hw.gpu.name}, "
                  f"KV capacity {hw.memory.kv_capacity_tokens} tokens per instance")


@app.command()
def policies() -> None:
    """List the policies and their knobs (with defaults)."""
    from llmsim.policies import POLICIES

    for p in POLICIES:
        doc = (sys.modules[p.__module__].__doc__ or "").strip().splitlines()[0]
        console.print(f"[bold]{p.name}[/]: {doc}")
        for name, f in p.Config.model_fields.items():
            if name == "kind":
                continue
            desc = f" — {f.description}" if f.description else ""
            console.print(f"    {name} = {f.default!r}{desc}", highlight=False)


@workload_app.command("export")
def workload_export(scenario: Optional[Path] = SCENARIO_ARG,
                    out: Path = typer.Option(..., "--out", help="CSV file in llmsim trace format"),
                    set_: Optional[list[str]] = SET_OPT) -> None:
    """Write a scenario's workload as an llmsim trace CSV (how traces/ is generated)."""
    import numpy as np

    from llmsim.scenario import load_scenario
    from llmsim.workload.source import workload_frame
    from llmsim.workload.traces import write_llmsim

    try:
        sc = load_scenario(scenario, set_ or [])
        df = workload_frame(sc.workload, np.random.default_rng(sc.seed), sc.base_dir)
    except InputError as e:
        _fail(str(e))
    out.parent.mkdir(parents=True, exist_ok=True)
    write_llmsim(df, out)
    console.print(f"wrote {len(df)} requests to {out}")


@app.command("goodput")
def goodput_cmd(scenario: Optional[Path] = SCENARIO_ARG, set_: Optional[list[str]] = SET_OPT,
                target: float = typer.Option(0.9, help="SLO attainment to hold"),
                seeds: int = typer.Option(1, help="seeds: averaged per probe, or one search each "
                                                  "with --per-seed"),
                per_seed: bool = typer.Option(False, help="search per seed; report a 95% CI"),
                metric: str = typer.Option("both", help="both | ttft | tpot | deadline"),
                slo_scale_at: Optional[float] = typer.Option(
                    None, help="instead: the smallest SLO scale holding the target at this rate")) -> None:
    """Highest arrival rate (total and per GPU) whose SLO attainment stays >= target."""
    from llmsim.analysis.goodput import goodput, goodput_by_seed, min_slo_scale
    from llmsim.scenario import load_scenario

    try:
        sc = load_scenario(scenario, set_ or [])
        if slo_scale_at is not None:
            scale = min_slo_scale(sc, slo_scale_at, target, tuple(range(seeds)), metric)
            console.print(f"min SLO scale holding {target:.0%} {metric} attainment at "
                          f"{slo_scale_at} req/s: {scale:.3f}")
            return
        if per_seed:
            g = goodput_by_seed(sc, tuple(range(seeds)), target, metric)
            lo, hi = g["ci95"]
            console.print(f"goodput at {target:.0%} {metric} attainment: {g['rate_per_s']:.3f} "
                          f"req/s (95% CI {lo:.3f}-{hi:.3f} over {seeds} seeds; "
                          f"{g['per_gpu_rate_per_s']:.3f} per GPU)")
            return
        g = goodput(sc, target, tuple(range(seeds)), metric)
    except InputError as e:
        _fail(str(e))
    console.print(f"goodput at {target:.0%} {metric} attainment: {g['rate_per_s']:.3f} req/s "
                  f"({g['per_gpu_rate_per_s']:.3f} per GPU, {g['num_gpus']} GPUs)")


@app.command("placement")
def placement_cmd(scenario: Path = typer.Argument(..., help="a disaggregated scenario"),
                  rate: float = typer.Option(..., help="target total rate, req/s"),
                  tp: list[int] = typer.Option([1, 2, 4], help="TP degrees to try"),
                  pp: list[int] = typer.Option([1], help="pipeline degrees to try"),
                  max_gpus: int = typer.Option(8, help="GPUs per instance at most (tp x pp)"),
                  set_: Optional[list[str]] = SET_OPT,
                  target: float = typer.Option(0.9)) -> None:
    """DistServe placement search: best (TP, PP) per phase by per-GPU goodput, replicated for
    --rate."""
    from llmsim.analysis.goodput import placement_search
    from llmsim.scenario import load_scenario

    try:
        p = placement_search(load_scenario(scenario, set_ or []), rate, tp, target, pps=pp,
                             max_gpus_per_instance=max_gpus)
    except InputError as e:
        _fail(str(e))
    console.print(f"prefill: {p.num_prefill} x TP{p.tp_prefill}-PP{p.pp_prefill} "
                  f"({p.goodput_prefill_per_gpu:.2f} req/s/GPU); decode: {p.num_decode} x "
                  f"TP{p.tp_decode}-PP{p.pp_decode} ({p.goodput_decode_per_gpu:.2f} req/s/GPU); "
                  f"{p.num_gpus} GPUs for {rate} req/s")


@app.command("sweep")
def sweep_cmd(sweep: Path = typer.Argument(..., help="sweep YAML: scenario + grid"),
              out: Optional[Path] = typer.Option(None, "--out", help="results folder"),
              workers: Optional[int] = typer.Option(None, help="local processes (default: cores)"),
              cluster: Optional[str] = typer.Option(
                  None, help="Dask scheduler address (workers must share the --out folder)")) -> None:
    """Run a grid of scenario variants in parallel; write OUT/sweep.parquet (resumable)."""
    from llmsim.analysis.sweep import load_sweep, run_sweep

    try:
        cfg, base = load_sweep(sweep)
        out = out or (base / cfg.out if cfg.out else Path("runs") / sweep.stem)
        with _Progress(enabled=sys.stderr.isatty(), unit="runs") as bar:
            table, ran = run_sweep(cfg, base, out, workers, progress=bar.update, cluster=cluster)
    except InputError as e:
        _fail(str(e))
    console.print(f"{len(table)} points ({ran} simulated now, {len(table) - ran} already done); "
                  f"table: {out / 'sweep.parquet'}")


@app.command("regress")
def regress_cmd(update: bool = typer.Option(False, "--update", help="rewrite the golden file"),
                case: Optional[list[str]] = typer.Option(None, help="only these cases")) -> None:
    """Re-run the policy-metrics regression cases and compare them with their golden values."""
    from llmsim.analysis.regress import (GOLDEN, check_orderings, compare, load_golden,
                                         run_cases, write_golden)

    got = run_cases(case)
    rows = compare(got, load_golden())
    moved = [r for r in rows if not r[4]]
    table = Table(title=f"policy metrics vs {GOLDEN.name}: {len(moved)} moved of {len(rows)}")
    for col in ("case", "metric", "golden", "now", ""):
        table.add_column(col)
    for c, m, g, v, ok in (moved if moved else rows[:0]):
        table.add_row(c, m, f"{g:.6g}", f"{v:.6g}", "ok" if ok else "MOVED")
    console.print(table)
    for text, ok in check_orderings(got):
        console.print(("ok      " if ok else "BROKEN  ") + text, highlight=False)
    if update:
        write_golden({**load_golden(), **got})
        console.print(f"updated {GOLDEN}")
    elif moved or not all(ok for _, ok in check_orderings(got)):
        raise typer.Exit(1)


def _profiles(gpu: Optional[str], model: Optional[str]) -> list[tuple[str, str]]:
    from llmsim.latency.calibrate import available

    chosen = [(g, m) for g, m in available() if (gpu in (None, g)) and (model in (None, m))]
    if not chosen:
        _fail(f"no measured profile with whole-model steps for gpu={gpu or 'any'} "
              f"model={model or 'any'}; have: {', '.join(f'{g}/{m}' for g, m in available())}")
    return chosen


@calibration_app.command("fit")
def calibration_fit(gpu: Optional[str] = typer.Option(None), model: Optional[str] = typer.Option(None)) -> None:
    """Fit each profile's framework terms on its 'fit' whole-model steps, per engine measured
    (hf_eager: overhead_fit.json; kernels: kernels_fit.json)."""
    from llmsim.latency.calibrate import engines_measured, fit_overhead

    for g, m in _profiles(gpu, model):
        for engine in engines_measured(g, m):
            fit = fit_overhead(g, m, engine=engine)
            console.print(f"{g}/{m} {engine}: rms relative error on fit steps "
                          f"{100 * fit['fit_rms_relative_error']:.1f}%", highlight=False)


@calibration_app.command("report")
def calibration_report(gpu: Optional[str] = typer.Option(None), model: Optional[str] = typer.Option(None),
                       plot: Optional[Path] = typer.Option(None, help="folder for PNG plots"),
                       csv: Optional[Path] = typer.Option(None, help="write per-step errors here")) -> None:
    """Predicted vs measured whole-model step time on held-out shapes: MAPE and worst case per
    phase and engine (hf_eager: transformers' eager steps; kernels: CUDA-graph replays), for the
    profiled model and for the roofline model on the same shapes."""
    import pandas as pd

    from llmsim.latency.calibrate import engines_measured, report, summarize_report

    try:
        df = pd.concat([report(g, m, engine=e) for g, m in _profiles(gpu, model)
                        for e in engines_measured(g, m)], ignore_index=True)
    except InputError as e:
        _fail(str(e))
    summary = summarize_report(df)
    table = Table(title="held-out whole-model steps: |predicted - measured| / measured")
    for col in summary.columns:
        table.add_column(col, justify="right" if summary[col].dtype.kind in "fi" else "left")
    for row in summary.itertuples(index=False):
        table.add_row(*[str(v) for v in row])
    console.print(table)
    if csv:
        df.to_csv(csv, index=False)
    if plot:
        from llmsim.analysis.plots import plot_calibration

        for p in plot_calibration(df, plot):
            console.print(f"wrote {p}")


@calibration_app.command("fit-engine")
def calibration_fit_engine() -> None:
    """Fit the real engine's step cost (engine_step_fit.json) from the committed replay runs."""
    from llmsim.analysis.fidelity import VALIDATION_ROOT
    from llmsim.analysis.fidelity_fit import fit_engine_profiles

    for p in fit_engine_profiles(VALIDATION_ROOT):
        console.print(f"wrote {p}", highlight=False)


@app.command("compare")
def compare_cmd(measured: Path = typer.Argument(..., help="a measured case folder (or its requests.csv)"),
                simulated: Optional[Path] = typer.Argument(None, help="an `llmsim run` output folder; "
                                                           "default: simulate the case now"),
                plot: Optional[Path] = typer.Option(None, help="write the CDF plot here (PNG)")) -> None:
    """Measured vs simulated: error of p50/p90/p99 TTFT, TPOT and E2E, per-request errors."""
    import pandas as pd

    from llmsim.analysis.fidelity import compare, load_case, plot_cdfs, simulate_case

    try:
        case = load_case(measured.parent if measured.suffix == ".csv" else measured)
        sim = pd.read_csv(simulated / "requests.csv") if simulated else simulate_case(case)
    except (InputError, FileNotFoundError) as e:
        _fail(str(e))
    r = compare(case.requests, sim)
    table = Table(title=f"{case.gpu}/{case.name}: simulated vs measured")
    for col in ("metric", "measured", "llmsim", "error"):
        table.add_column(col, justify="right")
    for k, v in r["quantiles"].items():
        table.add_row(k, f"{v['measured']:.3f}", f"{v['simulated']:.3f}", f"{100 * v['rel_error']:+.1f}%")
    console.print(table)
    for m, v in r["per_request"].items():
        console.print(f"per-request |error| {m}: median {100 * v['p50_abs_rel_error']:.1f}%, "
                      f"p90 {100 * v['p90_abs_rel_error']:.1f}%", highlight=False)
    console.print(f"median |error| over p50/p90: {100 * r['median_abs_error_p50_p90']:.1f}%, "
                  f"worst {100 * r['worst_abs_error_p50_p90']:.1f}%", highlight=False)
    if plot:
        console.print(f"wrote {plot_cdfs(case.requests, sim, plot, f'{case.gpu}/{case.name}')}")


@app.command("validate")
def validate_cmd(csv: Optional[Path] = typer.Option(None, help="write the per-case table here"),
                 repeats: bool = typer.Option(False, help="score each repeated real run against "
                                                          "its first run instead"),
                 pooled: bool = typer.Option(False, help="price every case at the pooled fit's "
                                                         "speed, not its session's"),
                 root: Optional[Path] = typer.Option(
                     None, help="score the cases under this folder (<gpu>/<case>, as the replay "
                                "writes them) instead: a held-out set, fitted on the committed "
                                "runs and its own other runs")) -> None:
    """Re-simulate every committed real-engine case (calibration/validation) and report errors."""
    from llmsim.analysis.fidelity import VALIDATION_ROOT, find_cases, repeatability, validate

    where = root or VALIDATION_ROOT
    if root is not None and not find_cases(root):
        _fail(f"--root: no measured cases under {root} (expected <gpu>/<case>/case.json)")
    fit_on = "all" if pooled else "session"
    try:
        df = repeatability(where) if repeats else validate(where, fit_on,
                                                           fit_roots=(VALIDATION_ROOT,))
    except InputError as e:
        _fail(str(e))
    table = Table(title="the real engine: repeat vs first run (relative difference)" if repeats
                  else "fidelity: simulated vs measured (relative error)")
    cols = ["gpu", "case", "median_abs_err", "worst_abs_err", "ttft_p50", "ttft_p90",
            "tpot_p50", "tpot_p90", "e2e_p50", "e2e_p90"]
    for c in cols:
        table.add_column(c, justify="left" if c in ("gpu", "case") else "right")
    for row in df[cols].itertuples(index=False):
        table.add_row(row[0], row[1], *[f"{100 * v:+.1f}%" for v in row[2:]])
    console.print(table)
    if csv:
        df.to_csv(csv, index=False)


@calibration_app.command("roofline")
def calibration_roofline(gpu: str = typer.Option(...), model: str = typer.Option(...),
                         engine: str = typer.Option("kernels", help="kernels | hf_eager")) -> None:
    """Fit roofline efficiencies to a measured profile (to correct the roofline elsewhere)."""
    from llmsim.latency.calibrate import fit_roofline

    try:
        fit = fit_roofline(gpu, model, engine)
    except InputError as e:
        _fail(str(e))
    console.print(f"latency: {{kind: roofline, compute_efficiency: {fit['compute_efficiency']}, "
                  f"bandwidth_efficiency: {fit['bandwidth_efficiency']}, step_overhead_s: "
                  f"{fit['step_overhead_s']}}}  # rms error {100 * fit['rms_relative_error']:.1f}% "
                  f"vs the {gpu}/{model} profile ({engine})", highlight=False)


class _Progress:
    """A rich progress bar over finished requests, shown only when the run takes a while."""

    def __init__(self, enabled: bool, unit: str = "requests") -> None:
        self.enabled, self.unit = enabled, unit
        self._bar = None
        self._task = None
        self._t0 = time.perf_counter()

    def __enter__(self):
        return self

    def update(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            if time.perf_counter() - self._t0 < 1.0:
                return
            from rich.progress import BarColumn, Progress, TimeRemainingColumn
            self._bar = Progress("[progress.description]{task.description}", BarColumn(),
                                 f"{{task.completed}}/{{task.total}} {self.unit}",
                                 TimeRemainingColumn(),
                                 console=err, transient=True)
            self._bar.start()
            self._task = self._bar.add_task("simulating", total=total)
        self._bar.update(self._task, completed=done)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
