"""The ``llmsim`` command line: a thin layer over the library, no logic of its own."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import NoReturn

import typer
from rich.table import Table

from llmsim import __version__
from llmsim.cli_io import Progress as _Progress
from llmsim.cli_io import Status, make_console, run_app
from llmsim.errors import InputError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Discrete-event simulator of LLM inference serving clusters.")
workload_app = typer.Typer(no_args_is_help=True, help="Workload utilities.")
app.add_typer(workload_app, name="workload")
console = make_console()
err = make_console(stderr=True)

DEFAULT_OUT = Path("runs/latest")
SCENARIO_ARG = typer.Argument(None, help="scenario YAML (default: the embedded quickstart)")
SET_OPT = typer.Option(None, "--set", help="override a field: key.path=value (repeatable)")


def _version(value: bool) -> None:
    if value:
        from llmsim.metrics.provenance import git_commit

        commit = git_commit()
        console.print(f"llmsim {__version__}" + (f" ({commit})" if commit else ""),
                      highlight=False)
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print llmsim's version (and commit) and exit.")) -> None:
    """Discrete-event simulator of LLM inference serving clusters."""


def _fail(msg: str) -> NoReturn:
    err.print(f"[bold red]error:[/] {msg}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _interrupted(msg: str) -> NoReturn:
    err.print(f"[bold yellow]interrupted:[/] {msg}", highlight=False, soft_wrap=True)
    raise typer.Exit(130)


@app.command()
def run(scenario: Path | None = SCENARIO_ARG,
        out: Path = typer.Option(DEFAULT_OUT, "--out", help="results directory (default "
                                 "runs/latest, replaced by each run without --out)"),
        set_: list[str] | None = SET_OPT,
        plots: bool = typer.Option(True, help="write plots"),
        plot_format: str = typer.Option("png", help="plot formats, comma-separated: png,svg,pdf"),
        log_x: bool | None = typer.Option(None, "--log-x/--linear-x", help="latency CDF x "
                                          "axes (default: log where a panel spans > 2 decades)"),
        table_format: str = typer.Option("csv", "--format", help="requests/steps records: "
                                         "csv or parquet"),
        metrics: str = typer.Option("llmsim", help="llmsim (the summary table) or vllm "
                                    "(benchmark_serving's names and block; vllm_metrics.json)"),
        trace_events: bool = typer.Option(False, help="write trace.json (Perfetto / "
                                          "chrome://tracing): steps per instance"),
        progress: bool = typer.Option(True, help="progress bar on long runs")) -> None:
    """Simulate a scenario and write requests.csv, steps.csv, summary.json, plots."""
    from llmsim.metrics.output import OutputOptions, summary_rows, write_results
    from llmsim.metrics.publish import check_out_dir
    from llmsim.scenario import load_scenario
    from llmsim.simulation import simulate

    formats = tuple(f.strip().lower() for f in plot_format.split(",") if f.strip())
    if not formats or set(formats) - {"png", "svg", "pdf"}:
        _fail(f"--plot-format: png, svg or pdf (comma-separated), got {plot_format!r}")
    if table_format not in ("csv", "parquet"):
        _fail(f"--format: csv or parquet, got {table_format!r}")
    if metrics not in ("llmsim", "vllm"):
        _fail(f"--metrics: llmsim or vllm, got {metrics!r}")
    opts = OutputOptions(plots=plots, table_format=table_format,  # type: ignore[arg-type]
                         metrics=metrics, trace_events=trace_events,  # type: ignore[arg-type]
                         plot_formats=formats, log_x=log_x)
    stage = "while loading the scenario"
    try:
        sc = load_scenario(scenario, set_ or [])
        check_out_dir(out)
        replaced = out == DEFAULT_OUT and (out / "summary.json").is_file()
        started = time.perf_counter()
        stage = "during the simulation"
        with _Progress(enabled=progress and sys.stderr.isatty()) as bar:
            res = simulate(sc, progress=bar.update)
        wall_s = time.perf_counter() - started
        stage = "while writing the results"
        paths = write_results(res, out, opts)
    except InputError as e:
        _fail(str(e))
    except KeyboardInterrupt:
        _interrupted(f"{stage}; {out} left as it was")
    if metrics == "vllm":
        from llmsim.metrics.vllm_compat import vllm_metrics, vllm_text

        console.print(vllm_text(vllm_metrics(res.requests, res.summary)), highlight=False,
                      markup=False)
        console.print(f"wrote {len(paths)} files to {out}/", highlight=False)
        return
    table = Table(title=f"llmsim: {sc.name} · {_layout(sc)} · "
                        f"{res.summary['num_requests']} requests")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in summary_rows(res.summary):
        table.add_row(k, v)
    console.print(table)
    console.print(f"cost model: {res.summary['latency_model']['source']}", highlight=False)
    console.print(f"simulated {res.summary['makespan_s']:.1f} s in {wall_s:.2f} s wall; "
                  f"wrote {len(paths)} files to {out}/", highlight=False)
    if replaced:
        err.print(f"note: {out}/ held an earlier run, now replaced; --out DIR keeps a run",
                  highlight=False)


@app.command()
def check(scenario: Path | None = SCENARIO_ARG, set_: list[str] | None = SET_OPT) -> None:
    """Validate a scenario (config, hardware fit, workload) without running it."""
    from llmsim.scenario import load_scenario
    from llmsim.simulation import load_requests, make_latency, never_served, resolve_hardware

    try:
        sc = load_scenario(scenario, set_ or [])
        hw = resolve_hardware(sc)
        make_latency(sc, hw)
        reqs = load_requests(sc)
    except InputError as e:
        _fail(str(e))
    never = never_served(sc, hw, reqs)
    if never and len(never) == len(reqs):
        _fail(f"every one of the {len(reqs)} requests would be rejected: {never[0]}")
    if never:
        err.print(f"[bold yellow]warning:[/] {len(never)} of {len(reqs)} requests would be "
                  f"rejected (the first: {never[0]})", highlight=False, soft_wrap=True)
    kv = ", ".join(f"{role} {mem.kv_capacity_tokens}" if role != "colocated" else
                   str(mem.kv_capacity_tokens) for role, (_, mem) in hw.sides.items())
    console.print(f"ok: {sc.name}: {len(reqs)} requests, {hw.model.name} on {hw.gpu.name}: "
                  f"{_layout(sc)}; KV capacity {kv} tokens per instance", highlight=False)


def _layout(sc) -> str:
    """``2 x TP1 vllm`` or ``P 1 x TP2 bucketserve + D 2 x TP1 distserve_decode``."""
    parts = []
    for role, side in sc.sides.items():
        pp = f" PP{side.pp}" if side.pp > 1 else ""
        tag = {"prefill": "P ", "decode": "D "}.get(role, "")
        parts.append(f"{tag}{side.num_instances} x TP{side.tp}{pp} {sc.policies[role].kind}")
    return " + ".join(parts)


@app.command()
def policies() -> None:
    """List the policies, what each follows, and their knobs (with defaults)."""
    from llmsim.policies import POLICIES

    for p in POLICIES:
        doc = (sys.modules[p.__module__].__doc__ or "").strip().splitlines()[0]
        what = doc.split(": policies.md")[0].split(" (policies.md")[0].replace("``", "")
        console.print(f"[bold]{p.name}[/]: {what.rstrip('.')}", highlight=False)
        if p.cite:
            console.print(f"    after: {p.cite}", highlight=False)
        for name, f in p.Config.model_fields.items():
            if name == "kind":
                continue
            desc = f" — {f.description}" if f.description else ""
            console.print(f"    {name} = {f.default!r}{desc}", highlight=False, markup=False)


@app.command()
def schema(out: Path | None = typer.Option(None, "--out", help="write here (default: stdout)")
           ) -> None:
    """The scenario file's JSON Schema, for editors (e.g. `# yaml-language-server: $schema=`)."""
    import json

    from llmsim.metrics.publish import write_atomic
    from llmsim.scenario_schema import scenario_schema

    text = json.dumps(scenario_schema(), indent=2) + "\n"
    if out is None:
        sys.stdout.write(text)
        return
    try:
        write_atomic(out, text)
    except OSError as e:
        _fail(f"--out {out}: {e.strerror or e}")
    console.print(f"wrote {out}", highlight=False)


@workload_app.command("export")
def workload_export(scenario: Path | None = SCENARIO_ARG,
                    out: Path = typer.Option(..., "--out", help="CSV file in llmsim trace format"),
                    set_: list[str] | None = SET_OPT) -> None:
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
def goodput_cmd(scenario: Path | None = SCENARIO_ARG, set_: list[str] | None = SET_OPT,
                target: float = typer.Option(0.9, help="SLO attainment to hold"),
                seeds: int = typer.Option(1, help="seeds: averaged per probe, or one search each "
                                                  "with --per-seed"),
                per_seed: bool = typer.Option(False, help="search per seed; report a 95% CI"),
                metric: str = typer.Option("both", help="both | ttft | tpot | deadline"),
                slo_scale_at: float | None = typer.Option(
                    None, help="instead: the smallest SLO scale holding the target at this rate")) -> None:
    """Highest arrival rate (total and per GPU) whose SLO attainment stays >= target."""
    from llmsim.analysis.goodput import METRICS
    from llmsim.scenario import load_scenario

    if seeds < 1:
        _fail(f"--seeds: at least 1, got {seeds}")
    if per_seed and seeds < 2:
        _fail("--per-seed: an interval across seeds needs --seeds 2 or more")
    if metric not in METRICS:
        _fail(f"--metric: {metric!r} is not one of {', '.join(METRICS)}")
    if not 0 < target <= 1:
        _fail(f"--target: an attainment in (0, 1], got {target}")
    try:
        sc = load_scenario(scenario, set_ or [])
        with Status("goodput search") as status:
            g = _goodput(sc, target, seeds, metric, per_seed, slo_scale_at, status.probe)
    except InputError as e:
        _fail(str(e))
    n = f" ({status.count} probes)"
    if slo_scale_at is not None:
        console.print(f"min SLO scale holding {target:.0%} {metric} attainment at "
                      f"{slo_scale_at} req/s: {g['scale']:.3f}{n}")
    elif per_seed:
        lo, hi = g["ci95"]
        console.print(f"goodput at {target:.0%} {metric} attainment: {g['rate_per_s']:.3f} "
                      f"req/s (95% CI {lo:.3f}-{hi:.3f} over {seeds} seeds; "
                      f"{g['per_gpu_rate_per_s']:.3f} per GPU){n}")
    else:
        console.print(f"goodput at {target:.0%} {metric} attainment: {g['rate_per_s']:.3f} "
                      f"req/s ({g['per_gpu_rate_per_s']:.3f} per GPU, {g['num_gpus']} GPUs){n}")


def _goodput(sc, target: float, seeds: int, metric: str, per_seed: bool,
             slo_scale_at: float | None, on_probe) -> dict:
    from llmsim.analysis.goodput import goodput, goodput_by_seed, min_slo_scale

    if slo_scale_at is not None:
        return {"scale": min_slo_scale(sc, slo_scale_at, target, tuple(range(seeds)), metric,
                                       on_probe=on_probe)}
    if per_seed:
        return goodput_by_seed(sc, tuple(range(seeds)), target, metric, on_probe=on_probe)
    return goodput(sc, target, tuple(range(seeds)), metric, on_probe=on_probe)


@app.command("placement")
def placement_cmd(scenario: Path = typer.Argument(..., help="a disaggregated scenario"),
                  rate: float = typer.Option(..., help="target total rate, req/s"),
                  tp: list[int] = typer.Option([1, 2, 4], help="TP degrees to try"),
                  pp: list[int] = typer.Option([1], help="pipeline degrees to try"),
                  max_gpus: int = typer.Option(8, help="GPUs per instance at most (tp x pp)"),
                  set_: list[str] | None = SET_OPT,
                  target: float = typer.Option(0.9)) -> None:
    """DistServe placement search: best (TP, PP) per phase by per-GPU goodput, replicated for
    --rate."""
    from llmsim.analysis.goodput import placement_search
    from llmsim.scenario import load_scenario

    try:
        with Status("placement search") as status:
            p = placement_search(load_scenario(scenario, set_ or []), rate, tp, target, pps=pp,
                                 max_gpus_per_instance=max_gpus, on_probe=status.probe)
    except InputError as e:
        _fail(str(e))
    console.print(f"prefill: {p.num_prefill} x TP{p.tp_prefill}-PP{p.pp_prefill} "
                  f"({p.goodput_prefill_per_gpu:.2f} req/s/GPU); decode: {p.num_decode} x "
                  f"TP{p.tp_decode}-PP{p.pp_decode} ({p.goodput_decode_per_gpu:.2f} req/s/GPU); "
                  f"{p.num_gpus} GPUs for {rate} req/s")


@app.command("sweep")
def sweep_cmd(sweep: Path = typer.Argument(..., help="sweep YAML: scenario + grid"),
              out: Path | None = typer.Option(None, "--out", help="results folder"),
              workers: int | None = typer.Option(None, help="local processes (default: cores)"),
              cluster: str | None = typer.Option(
                  None, help="Dask scheduler address (workers must share the --out folder), or local[:N] "
                  "to start N worker processes here")) -> None:
    """Run a grid of scenario variants in parallel; write OUT/sweep.parquet (resumable)."""
    from llmsim.analysis.sweep import load_sweep, run_sweep
    from llmsim.metrics.publish import check_out_dir

    if workers is not None and workers < 1:
        _fail(f"--workers: at least 1, got {workers}")
    try:
        cfg, base = load_sweep(sweep)
        out_dir: Path = check_out_dir(
            out if out is not None else (base / cfg.out if cfg.out else Path("runs") / sweep.stem))
        with _Progress(enabled=sys.stderr.isatty(), unit="runs") as bar:
            table, ran = run_sweep(cfg, base, out_dir, workers, progress=bar.update, cluster=cluster)
    except InputError as e:
        _fail(str(e))
    console.print(f"{len(table)} points ({ran} simulated now, {len(table) - ran} already done); "
                  f"table: {out_dir / 'sweep.parquet'}")


@app.command("regress")
def regress_cmd(update: bool = typer.Option(False, "--update", help="rewrite the golden file"),
                case: list[str] | None = typer.Option(None, help="only these cases"),
                root: Path = typer.Option(Path("."), help="the llmsim checkout whose shipped "
                                          "scenarios and golden file to use")) -> None:
    """Re-run the policy-metrics regression cases and compare them with their golden values."""
    from llmsim.analysis.regress import (
        GOLDEN,
        check_orderings,
        compare,
        load_golden,
        run_cases,
        write_golden,
    )

    try:
        with _Progress(enabled=sys.stderr.isatty(), unit="cases") as bar:
            got = run_cases(root, case, progress=bar.update)
    except InputError as e:
        _fail(str(e))
    rows = compare(got, load_golden(root))
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
        write_golden(root, {**load_golden(root), **got})
        console.print(f"updated {root / GOLDEN}")
    elif moved or not all(ok for _, ok in check_orderings(got)):
        raise typer.Exit(1)


def main() -> None:
    run_app(app, err)


if __name__ == "__main__":
    main()
