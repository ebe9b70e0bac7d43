"""The analysis commands of the ``llmsim`` command line: goodput, placement, fleet, sweep, regress
(``register`` adds them to the app; a thin layer over ``llmsim.analysis``)."""
from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.table import Table

from llmsim.cli_io import SCENARIO_ARG, SET_OPT, Status, console
from llmsim.cli_io import Progress as _Progress
from llmsim.cli_io import fail as _fail
from llmsim.errors import InputError


def goodput_cmd(scenario: Path | None = SCENARIO_ARG, set_: list[str] | None = SET_OPT,
                target: float = typer.Option(0.9, help="SLO attainment to hold"),
                seeds: int = typer.Option(1, help="seeds: averaged per probe, or one search each "
                                                  "with --per-seed"),
                per_seed: bool = typer.Option(False, help="search per seed; report a 95% CI"),
                metric: str = typer.Option("both", help="both | ttft | tpot | deadline | each (TTFT and TPOT each on their own, as DistServe's simulator)"),
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


def pareto_cmd(results: Path = typer.Argument(..., help="a sweep's --out folder (sweep.parquet)"),
               cost: str = typer.Option("cost.usd_per_million_output_tokens",
                                        help="column to minimise (e.g. energy.j_per_output_token)"),
               quality: str = typer.Option("slo_attainment.both", help="column to maximise")) -> None:
    """The cost-quality frontier of a sweep: a table of its configurations and OUT/pareto.png."""
    import pandas as pd

    from llmsim.analysis.pareto import label, pareto_front, plot_pareto

    path = results / "sweep.parquet"
    if not path.exists():
        _fail(f"{results}: no sweep.parquet (run llmsim sweep --out {results} first)")
    table = pd.read_parquet(path)
    for col in (cost, quality):
        if col not in table:
            _fail(f"--{'cost' if col == cost else 'quality'}: no column {col!r} in {path}")
    axes = [c for c in table.columns if c.startswith("axis.")]
    on = pareto_front(table, cost, quality)
    names = label(table, axes) if axes else table["run"].astype(str)
    out = Table(title=f"{int(on.sum())} of {len(table)} configurations on the frontier")
    for col in ("configuration", cost, quality, "frontier"):
        out.add_column(col)
    for i in table.sort_values(cost).index:
        out.add_row(names[i], f"{table.at[i, cost]:.4g}", f"{table.at[i, quality]:.1%}",
                    "yes" if on[i] else "")
    console.print(out)
    paths = plot_pareto(table, axes, results / "pareto.png", cost, quality)
    console.print(f"wrote {', '.join(str(p) for p in paths)}", highlight=False)


def compare_cmd(a: Path | None = typer.Argument(None, help="scenario A (default: the embedded "
                                                          "default scenario)"),
                b: Path | None = typer.Argument(None, help="scenario B (default: A, with --set-b)"),
                set_: list[str] | None = SET_OPT,
                set_a: list[str] | None = typer.Option(None, "--set-a", help="override for A only"),
                set_b: list[str] | None = typer.Option(None, "--set-b", help="override for B only"),
                seeds: int = typer.Option(10, help="workloads (seeds) both run on, paired"),
                draws: int = typer.Option(1, help="cost-model error draws per seed"),
                cost_model_error: bool = typer.Option(
                    False, help="scale each run's steps by a draw of the profiled model's "
                                "measured held-out error (shared by A and B on one GPU)"),
                error_scale: float = typer.Option(
                    1.0, help="with --cost-model-error: the measured errors this many times as "
                              "large (how wrong would the model have to be to flip the verdict)"),
                metric: list[str] | None = typer.Option(None, help="summary metrics to compare "
                                                        "(default: attainment, goodput, p90 "
                                                        "TTFT/TPOT, $ and J per token)"),
                confidence: float = typer.Option(0.9, help="band level")) -> None:
    """A against B on the same workloads: each metric with a band, and P(A beats B)."""
    from llmsim.analysis.compare import DEFAULT_METRICS, compare_runs, run_pairs
    from llmsim.scenario import load_scenario

    if seeds < 1 or draws < 1:
        _fail("--seeds and --draws: at least 1")
    if seeds * draws < 2:
        _fail("--seeds x --draws: a band needs 2 replicates or more")
    if not 0 < confidence < 1:
        _fail(f"--confidence: a level in (0, 1), got {confidence}")
    if (draws > 1 or error_scale != 1.0) and not cost_model_error:
        _fail(f"--{'draws' if draws > 1 else 'error-scale'}: draws of the cost model's error "
              "need --cost-model-error")
    try:
        sc_a = load_scenario(a, [*(set_ or []), *(set_a or [])])
        sc_b = load_scenario(b if b is not None else a, [*(set_ or []), *(set_b or [])])
        with _Progress(enabled=sys.stderr.isatty(), unit="pairs") as bar:
            pairs = run_pairs(sc_a, sc_b, range(seeds), draws, cost_model_error, bar.update,
                              error_scale)
    except InputError as e:
        _fail(str(e))
    rows = compare_runs(pairs, metric or DEFAULT_METRICS, confidence)
    if not rows:
        _fail(f"--metric: none of {', '.join(metric or DEFAULT_METRICS)} is in the summary")
    what = f"{seeds} seeds" + (f" x {draws} cost-model draws" if cost_model_error else "") \
        + (f" (errors x {error_scale:g})" if error_scale != 1.0 else "")
    table = Table(title=f"A vs B over {what}: mean [{confidence:.0%} band]")
    for col in ("metric", "better", "A", "B", "A - B", "P(A beats B)"):
        table.add_column(col)

    def fmt(m: float, band: tuple[float, float]) -> str:
        return f"{m:.4g} [{band[0]:.4g}, {band[1]:.4g}]"

    for r in rows:
        table.add_row(r.metric, "higher" if r.higher_is_better else "lower",
                      fmt(r.a_mean, r.a_band), fmt(r.b_mean, r.b_band),
                      fmt(r.diff_mean, r.diff_band), f"{r.p_a_beats_b:.3f}")
    console.print(table)


def decide_cmd(results: Path = typer.Argument(..., help="a sweep's --out folder (sweep.parquet)"),
               by: str = typer.Option(..., help="the axis to decide, e.g. policy (axis.policy)"),
               metric: str = typer.Option("slo_attainment.both", help="summary metric"),
               confidence: float = typer.Option(0.9, help="band level")) -> None:
    """At each setting of a sweep's other axes: the winner on BY, its margin over the runner-up
    (paired by seed, with a band) and P(win)."""
    import pandas as pd

    from llmsim.analysis.decide import decision_table

    path = results / "sweep.parquet"
    if not path.exists():
        _fail(f"{results}: no sweep.parquet (run llmsim sweep --out {results} first)")
    if not 0 < confidence < 1:
        _fail(f"--confidence: a level in (0, 1), got {confidence}")
    axis = by if by.startswith("axis.") else f"axis.{by}"
    try:
        d = decision_table(pd.read_parquet(path), axis, metric, confidence)
    except InputError as e:
        _fail(f"--by/--metric: {e}")
    table = Table(title=f"{metric}: the best {by} per setting, against the runner-up "
                        f"[{confidence:.0%} band of the margin]")
    rest = [c for c in d.columns if c.startswith("axis.")]
    for col in [*(c.removeprefix("axis.") for c in rest), "winner", "runner-up", "winner mean",
                "margin", "P(win)", "seeds"]:
        table.add_column(col)
    for _, r in d.iterrows():
        table.add_row(*(str(r[c]) for c in rest), str(r["winner"]), str(r["runner_up"]),
                      f"{r['winner_mean']:.4g}",
                      f"{r['margin']:+.4g} [{r['margin_lo']:+.4g}, {r['margin_hi']:+.4g}]",
                      f"{r['p_win']:.3f}", str(r["n_seeds"]))
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add the analysis commands to ``app``."""
    app.command("goodput")(goodput_cmd)
    app.command("placement")(placement_cmd)
    app.command("sweep")(sweep_cmd)
    app.command("regress")(regress_cmd)
    app.command("pareto")(pareto_cmd)
    app.command("compare")(compare_cmd)
    app.command("decide")(decide_cmd)
    from llmsim.cli_fleet import fleet_cmd

    app.command("fleet")(fleet_cmd)
