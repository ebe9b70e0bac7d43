"""``llmsim-lab``: fit the measured GPU profiles' framework terms, fit a real engine's step cost,
and score llmsim against real engine runs (compare, validate, decisions, regimes)."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from calibration.cli_base import _fail, app, console, err
from llmsim.errors import InputError


def _profiles(gpu: str | None, model: str | None) -> list[tuple[str, str]]:
    from calibration.overhead_fit import available

    chosen = [(g, m) for g, m in available() if (gpu in (None, g)) and (model in (None, m))]
    if not chosen:
        _fail(f"no measured profile with whole-model steps for gpu={gpu or 'any'} "
              f"model={model or 'any'}; have: {', '.join(f'{g}/{m}' for g, m in available())}")
    return chosen


@app.command("fit")
def calibration_fit(gpu: str | None = typer.Option(None), model: str | None = typer.Option(None)) -> None:
    """Fit each profile's framework terms on its 'fit' whole-model steps, per engine measured
    (hf_eager: overhead_fit.json; kernels: kernels_fit.json)."""
    from calibration.overhead_fit import engines_measured, fit_overhead

    for g, m in _profiles(gpu, model):
        for engine in engines_measured(g, m):
            fit = fit_overhead(g, m, engine=engine)
            console.print(f"{g}/{m} {engine}: rms relative error on fit steps "
                          f"{100 * fit['fit_rms_relative_error']:.1f}%", highlight=False)


@app.command("report")
def calibration_report(gpu: str | None = typer.Option(None), model: str | None = typer.Option(None),
                       plot: Path | None = typer.Option(None, help="folder for PNG plots"),
                       csv: Path | None = typer.Option(None, help="write per-step errors here")) -> None:
    """Predicted vs measured whole-model step time on held-out shapes: MAPE and worst case per
    phase and engine (hf_eager: transformers' eager steps; kernels: CUDA-graph replays), for the
    profiled model and for the roofline model on the same shapes."""
    import pandas as pd

    from calibration.overhead_fit import engines_measured, report, summarize_report

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
        from calibration.plots import plot_calibration

        for p in plot_calibration(df, plot):
            console.print(f"wrote {p}")


@app.command("fit-engine")
def calibration_fit_engine() -> None:
    """Fit the real engine's step cost (engine_step_fit.json) from the committed replay runs."""
    from calibration.cases import VALIDATION_ROOT
    from calibration.fidelity_fit import fit_engine_profiles

    for p in fit_engine_profiles(VALIDATION_ROOT):
        console.print(f"wrote {p}", highlight=False)


@app.command("parts")
def parts_cmd(gpu: str = typer.Option("h200"), model: str = typer.Option("llama-3.1-8b"),
              graph: bool = typer.Option(False, help="the engine in CUDA-graph mode: "
                                                     "hf_cb_graph_parts against hf_cb_graph")
              ) -> None:
    """The engine's step assembled from its measured parts (profiler-trace or forward-probe
    runs under calibration/engine_grid/parts; `fit-engine` stores it as engine hf_cb_parts, and
    hf_cb_graph_parts in graph mode), scored on every committed replay beside the whole-step
    fit."""
    import json

    from calibration.engine_fit import ENGINE_FITS, FIT_FILE
    from calibration.step_parts import committed_runs, parts_fit, score

    try:
        fit = parts_fit(gpu, model)
    except ValueError as e:
        _fail(f"parts: {e}")
    if fit is None:
        probed = [d.name for d, case in committed_runs(gpu, model) if case.get("parts")]
        _fail(f"no clean forward-probe step in {', '.join(probed)} (the host waited on the GPU "
              "inside every probed forward)" if probed else
              f"no parts runs (profiler traces or forward probes) of {gpu}/{model} under "
              "calibration/engine_grid/parts")
    path = ENGINE_FITS / gpu / model / FIT_FILE
    fits = json.loads(path.read_text())
    engine = "hf_cb_graph" if graph else "hf_cb"
    if graph:
        if "hf_cb_graph_parts" not in fits:
            _fail(f"no hf_cb_graph_parts in {path}: it needs graph-mode runs of {gpu}/{model} "
                  "(`llmsim-lab fit-engine` after they are committed)")
        fit = fits["hf_cb_graph_parts"]
    if engine not in fits:  # parts assembled without a replay of this mode: nothing to score
        _fail(f"no {engine} replays of {gpu}/{model} committed to score "
              f"{'hf_cb_graph_parts' if graph else 'hf_cb_parts'} on ({path} has {sorted(fits)})")
    console.print(f"parts: {fit['parts']}", highlight=False)
    console.print("coef_s: " + ", ".join(f"{k} {v:.3g}" for k, v in
                                         zip(fit["features"], fit["coef_s"])), highlight=False)
    df = score(fit, fits[engine], gpu, model, engine=engine)
    table = Table(title=f"{gpu}/{model}: replay steps, predicted vs measured (no host correction)")
    for c in df.columns:
        table.add_column(c, justify="left" if c == "case" else "right")
    for r in df.to_dict("records"):
        table.add_row(r["case"], str(r["fitted"]), str(r["steps"]), f"{r['measured_s']:.1f}",
                      *[f"{100 * r[c]:+.1f}%" for c in df.columns[4:]])
    console.print(table)
    for name in ("whole", "parts"):
        for grp, sub in df.groupby("fitted"):
            console.print(f"{name}: runs the whole-step fit {'was' if grp else 'was not'} "
                          f"fitted on, median |total "
                          f"error| {100 * sub[f'{name}_total_err'].abs().median():.1f}%, median "
                          f"step MAPE {100 * sub[f'{name}_step_mape'].median():.1f}%",
                          highlight=False)


@app.command("fit-power")
def fit_power_cmd(gpu: str = typer.Option("h200", help="GPU whose profiles hold power.csv")) -> None:
    """Fit GPU power against step MFU/MBU from the measured power.csv files (power_fit.json)."""
    from calibration.power_fit import main as fit_power

    fit_power(["--gpu", gpu])


@app.command("residuals")
def residuals_cmd() -> None:
    """Pool the profiled model's held-out step errors per GPU, engine and phase
    (profiles/<gpu>/_residuals/<engine>.json: what llmsim compare --cost-model-error draws)."""
    from calibration.residuals import main as write_residuals

    write_residuals()


@app.command("regimes")
def calibration_regimes(root: Path | None = typer.Argument(
                            None, help="replay runs under this folder (default: the committed "
                                       "validation runs)"),
                        csv: Path | None = typer.Option(None, help="write the table here")) -> None:
    """The host's fast and slow states in each probed replay run: share of plan-building steps
    in the slow state and the two states' plan-build times (calibration.host_regimes)."""
    from calibration.cases import VALIDATION_ROOT
    from calibration.host_regimes import regimes

    try:
        df = regimes(root or VALIDATION_ROOT)
    except InputError as e:
        _fail(str(e))
    table = Table(title="host states per run (step probe)")
    for c in ("run", "plan steps", "slow share", "slow time share", "fast plan ms",
              "slow plan ms", "small-step rest slow/fast"):
        table.add_column(c, justify="left" if c == "run" else "right")
    for r in df.itertuples(index=False):
        table.add_row(r.run, str(r.plan_steps), f"{r.slow_share:.0%}", f"{r.slow_time_share:.0%}",
                      f"{r.fast_plan_ms:.1f}", f"{r.slow_plan_median_ms:.1f}",
                      f"{r.small_rest_slow_over_fast:.2f}")
    console.print(table)
    if csv:
        df.to_csv(csv, index=False)


@app.command("roofline")
def calibration_roofline(gpu: str = typer.Option(...), model: str = typer.Option(...),
                         engine: str = typer.Option("kernels", help="kernels | hf_eager"),
                         check_on: list[str] | None = typer.Option(
                             None, help="measured GPUs to check the correction on (repeatable)")
                         ) -> None:
    """Fit roofline efficiencies to a measured profile (to correct the roofline elsewhere)."""
    from calibration.overhead_fit import fit_roofline, roofline_transfer_error

    try:
        fit = fit_roofline(gpu, model, engine)
        checks = [roofline_transfer_error(fit, other) for other in check_on or []]
    except InputError as e:
        _fail(str(e))
    console.print(f"latency: {{kind: roofline, compute_efficiency: {fit['compute_efficiency']}, "
                  f"bandwidth_efficiency: {fit['bandwidth_efficiency']}, step_overhead_s: "
                  f"{fit['step_overhead_s']}}}  # rms error {100 * fit['rms_relative_error']:.1f}% "
                  f"vs the {gpu}/{model} profile ({engine})", highlight=False)
    for c in checks:
        console.print(f"carried to {c['gpu']}: rms error {100 * c['rms_relative_error']:.1f}%, "
                      f"worst {100 * c['max_abs_relative_error']:.1f}%, mean "
                      f"{100 * c['mean_relative_error']:+.1f}% vs its measured profile",
                      highlight=False)


def main() -> None:
    from calibration import cli_fidelity  # noqa: F401  (registers compare, validate, decisions)
    from llmsim.cli_io import run_app

    run_app(app, err)


if __name__ == "__main__":
    main()
