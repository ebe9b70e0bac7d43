"""``llmsim-lab`` against real engine runs: compare one case, validate every committed case,
score the decisions a user would take from them."""
from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import typer
from rich.table import Table

from calibration.cli_base import _fail, app, console
from llmsim.cli_io import Progress
from llmsim.errors import InputError


@app.command("compare")
def compare_cmd(measured: Path = typer.Argument(..., help="a measured case folder (or its requests.csv)"),
                simulated: Path | None = typer.Argument(None, help="an `llmsim run` output folder; "
                                                           "default: simulate the case now"),
                plot: Path | None = typer.Option(None, help="write the CDF plot here (PNG)")) -> None:
    """Measured vs simulated: error of p50/p90/p99 TTFT, TPOT and E2E, per-request errors."""
    import pandas as pd

    from calibration.fidelity import VALIDATION_ROOT, compare, load_case, plot_cdfs, simulate_case

    try:
        case = load_case(measured.parent if measured.suffix == ".csv" else measured)
        # a run that is not committed is predicted as `validate --root` would: fitted on the
        # committed runs too, not on its own folder's two or three siblings alone
        sim = (pd.read_csv(simulated / "requests.csv") if simulated
               else simulate_case(case, fit_roots=(VALIDATION_ROOT,)))
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


def _fit_on(pooled: bool, own_speed: bool, repeats: bool = False) -> str:
    """The host speed a case is priced at (``fidelity.simulate_case``), from the CLI's flags."""
    if sum((repeats, pooled, own_speed)) > 1:
        _fail(("--repeats, " if repeats else "") + "--pooled and --own-speed: choose one")
    return "all" if pooled else "own" if own_speed else "session"


@app.command("validate")
def validate_cmd(csv: Path | None = typer.Option(None, help="write the per-case table here"),
                 repeats: bool = typer.Option(False, help="score each repeated real run against "
                                                          "its first run instead"),
                 pooled: bool = typer.Option(False, help="price every case at the pooled fit's "
                                                         "speed, not its session's"),
                 own_speed: bool = typer.Option(False, help="diagnostic, not a prediction: price "
                                                            "each continuous-batching case at the "
                                                            "speed its own steps ran"),
                 root: Path | None = typer.Option(
                     None, help="score the cases under this folder (<gpu>/<case>, as the replay "
                                "writes them) instead: a held-out set, fitted on the committed "
                                "runs and its own other runs"),
                 parts: bool = typer.Option(False, help="price continuous batching by the "
                                                        "step assembled from measured parts "
                                                        "(hf_cb_parts eager, hf_cb_graph_parts "
                                                        "in graph mode); only the cases they "
                                                        "price")) -> None:
    """Re-simulate every committed real-engine case (calibration/validation) and report errors."""
    from calibration.fidelity import VALIDATION_ROOT, find_cases, validate
    from calibration.spread import repeatability

    where = root or VALIDATION_ROOT
    if root is not None and not find_cases(root):
        _fail(f"--root: no measured cases under {root} (expected <gpu>/<case>/case.json)")
    fit_on = _fit_on(pooled, own_speed, repeats)
    try:
        with Progress(enabled=sys.stderr.isatty(), unit="cases") as bar:
            df = repeatability(where) if repeats else validate(
                where, fit_on, fit_roots=(VALIDATION_ROOT,), progress=bar.update, parts=parts)
    except InputError as e:
        _fail(str(e))
    table = Table(title="the real engine: repeat vs first run (relative difference)" if repeats
                  else "fidelity at each run's own host speed (diagnostic)" if own_speed
                  else "fidelity: simulated vs measured (relative error)")
    cols = ["gpu", "case", "median_abs_err", "worst_abs_err", "ttft_p50", "ttft_p90",
            "tpot_p50", "tpot_p90", "e2e_p50", "e2e_p90"]
    for c in cols:
        table.add_column(c, justify="left" if c in ("gpu", "case") else "right")
    for row in df[cols].itertuples(index=False):
        table.add_row(row[0], row[1], *[f"{100 * v:+.1f}%" for v in row[2:]])
    console.print(table)
    if len(df):
        med = df["median_abs_err"]
        console.print(f"{len(df)} cases: median |error| over p50/p90 of TTFT, TPOT, E2E "
                      f"{100 * med.median():.1f}% (per case: best {100 * med.min():.1f}%, worst "
                      f"{100 * med.max():.1f}%); within 10%: {int((med <= 0.10).sum())} of "
                      f"{len(df)}; worst single quantile {100 * df['worst_abs_err'].max():.1f}%",
                      highlight=False)
    if "outside_share" in df and len(df):
        out = df[df["outside_share"] > 0.01]
        inside = df[df["outside_share"] <= 0.01]
        console.print(f"priced partly outside the measured range of their fit (over 1% of "
                      f"simulated busy time, flagged by the run): {len(out)} of {len(df)} cases"
                      + (f", median share {100 * out['outside_share'].median():.0f}%, median "
                         f"|error| {100 * out['median_abs_err'].median():.1f}%" if len(out) else "")
                      + (f" (inside: {100 * inside['median_abs_err'].median():.1f}%)"
                         if len(out) and len(inside) else ""),
                      highlight=False)
    if fit_on == "session" and "session_runs" in df and len(df):
        alone = df[df["session_runs"] == 0]
        console.print(f"priced with no session speed (no other run of their engine variant in "
                      f"their session, so at the fit's own speed): {len(alone)} of {len(df)} cases"
                      + (f", median |error| {100 * alone['median_abs_err'].median():.1f}% (the "
                         f"rest: {100 * df[df['session_runs'] > 0]['median_abs_err'].median():.1f}%)"
                         if 0 < len(alone) < len(df) else ""), highlight=False)
    batches = [abs(e) for errs in df.get("batch_errors", []) if errs for e in errs]
    if batches:
        b = sorted(batches)
        console.print(f"static generate batches: {len(b)} in "
                      f"{int(df['batch_errors'].notna().sum())} cases, per-batch duration median "
                      f"|error| {100 * b[len(b) // 2]:.1f}%, within 10%: "
                      f"{sum(e <= 0.10 for e in b)} of {len(b)}, worst {100 * b[-1]:.1f}%",
                      highlight=False)
        from calibration.spread import batch_repeatability, batches_per_configuration

        conf = np.abs(batches_per_configuration(df))
        if len(conf):
            console.print(f"  per repeated configuration, each batch against the mean of its "
                          f"runs: {len(conf)} batches, median |error| "
                          f"{100 * float(np.median(conf)):.1f}%, within 10%: "
                          f"{int((conf <= 0.10).sum())} of {len(conf)}", highlight=False)

        spread = batch_repeatability(where)
        if len(spread):
            console.print(f"  the engine against itself (a repeated static case's batches vs its "
                          f"first run's): median {100 * float(np.median(spread)):.1f}%, within "
                          f"10%: {int((spread <= 0.10).sum())} of {len(spread)}", highlight=False)
    if not repeats and len(df):
        from calibration.spread import SPREAD_MARGIN, against_spread

        df = against_spread(df, repeatability(where))
        w = df["within_spread"].dropna()
        if len(w):
            console.print(f"against the engine's own repeat spread: {int(w.sum())} of {len(w)} "
                          f"cases of a repeated configuration have every p50/p90 metric within "
                          f"its spread + {100 * SPREAD_MARGIN:.0f} points (median spread "
                          f"{100 * df['spread_median'].median():.1f}%)", highlight=False)
        _held_out_summary(df)
    if csv:
        df.to_csv(csv, index=False)


def _held_out_summary(df) -> None:
    """The runs never fitted on (``heldout_*``), per run and per configuration against the mean
    of its runs (the engine's noise averaged out): the fidelity goal's own numbers."""
    from calibration.fidelity_fit import HELDOUT_PREFIX
    from calibration.spread import per_configuration

    conf = per_configuration(df)
    held = df[df["case"].str.startswith(HELDOUT_PREFIX)]
    held_conf = conf[conf["config"].str.split("/").str[1].str.startswith(HELDOUT_PREFIX)
                     .astype(bool)]
    if len(conf):
        console.print(f"per repeated configuration, against the mean of its runs: {len(conf)} "
                      f"configurations, median |error| {100 * conf['median_abs_err'].median():.1f}%"
                      f", within 10%: {int((conf['median_abs_err'] <= 0.10).sum())}",
                      highlight=False)
    if len(held):
        w = held["within_spread"].dropna()
        console.print(f"held out (heldout_*, never fitted on): {len(held)} runs, median |error| "
                      f"{100 * held['median_abs_err'].median():.1f}%, {int(w.sum())} of {len(w)} "
                      f"repeated runs within spread + 10"
                      + (f"; {len(held_conf)} configurations against their runs' mean: median "
                         f"{100 * held_conf['median_abs_err'].median():.1f}%" if len(held_conf)
                         else "")
                      + "".join(f"; {r.config} {100 * r.median_abs_err:.1f}%"
                                for r in held_conf.itertuples()), highlight=False)


@app.command("decisions")
def decisions_cmd(pairs: Path | None = typer.Option(
                      None, help="YAML of case pairs, each run in one session (default: "
                                 "calibration/validation/decision_pairs.yaml)"),
                  root: Path | None = typer.Option(
                      None, help="the pairs' <gpu>/<case> folders are under here (a held-out set)"),
                  pooled: bool = typer.Option(False, help="price every case at the pooled fit's speed"),
                  own_speed: bool = typer.Option(False, help="diagnostic: each case at the speed "
                                                             "its own steps ran"),
                  csv: Path | None = typer.Option(None, help="write the per-decision table here")) -> None:
    """Which of two configurations has the lower mean E2E / p90 TTFT, by how much: the real runs
    vs llmsim, and the engine vs itself where a pair ran in several sessions."""
    from calibration.decisions import (
        PAIRS_FILE,
        decision_table,
        engine_agreement,
        load_pairs,
        repeat_spread,
        repeated_pairs,
    )
    from calibration.fidelity import VALIDATION_ROOT, load_case, simulate_case

    fit_on = _fit_on(pooled, own_speed)
    where, runs = root or VALIDATION_ROOT, {}
    bar = Progress(enabled=sys.stderr.isatty(), unit="cases")
    total = [0]

    def run(key: str):
        if key not in runs:
            case = load_case(where / key)
            runs[key] = (case, simulate_case(case, fit_on=fit_on, fit_roots=(VALIDATION_ROOT,)))
            bar.update(len(runs), total[0])
        return runs[key]

    try:
        plist = load_pairs(pairs or VALIDATION_ROOT / PAIRS_FILE)
        total[0] = len({k for pair in plist for k in pair})
        with bar:
            spread = repeat_spread(plist, lambda k: run(k)[0].requests)
            df = decision_table(plist, lambda k: run(k)[0].requests, lambda k: run(k)[1],
                                spread)
            engine = engine_agreement(plist, lambda k: run(k)[0].requests)
    except InputError as e:
        _fail(str(e))
    _ratio_table("decisions: ratio b / a, real vs llmsim", ("a", "b", "stat"),
                 [((r.a, r.b, r.stat), r) for r in df.itertuples(index=False)])
    console.print(f"llmsim reproduces {int(df['reproduced'].sum())} of {len(df)} decisions",
                  highlight=False)
    scored = df[df["scored"]]
    console.print(f"where the real gap exceeds the engine's own repeat spread: llmsim reproduces "
                  f"{int(scored['reproduced'].sum())} of {len(scored)} decisions "
                  f"({len(df) - len(scored)} within the spread, in parentheses, not scored)",
                  highlight=False)
    if len(engine):
        # llmsim on the same runs the engine is scored on: the pairs whose configuration repeats
        keys = repeated_pairs(plist)
        repeated = df[[(a, b) in keys for a, b in zip(df["a"], df["b"])]]
        console.print(f"where a pair ran in several sessions: the engine reproduces its own "
                      f"decision from another session {int(engine['reproduced'].sum())} of "
                      f"{len(engine)} times ({engine['reproduced'].mean():.0%}); llmsim "
                      f"{int(repeated['reproduced'].sum())} of {len(repeated)} "
                      f"({repeated['reproduced'].mean():.0%})", highlight=False)
    _gpu_decisions(where, run)
    if csv:
        df.to_csv(csv, index=False)


def _ratio_table(title: str, lead: tuple[str, ...], rows: list[tuple[tuple[str, ...], Any]]
                 ) -> None:
    """A decision table: the ``lead`` columns, then each row's real and llmsim ratio, the
    engine's spread and the verdict (in parentheses where the gap is inside the spread)."""
    table = Table(title=title)
    for c in (*lead, "real", "llmsim", "engine spread", ""):
        table.add_column(c, justify="right" if c in ("real", "llmsim", "engine spread")
                         else "left")
    for cells, r in rows:
        verdict = "ok" if r.reproduced else "MISS"
        table.add_row(*cells, f"{r.real:.2f}x", f"{r.simulated:.2f}x",
                      f"x{math.exp(r.spread):.2f}", verdict if r.scored else f"({verdict})")
    console.print(table)


def _gpu_decisions(where: Path, run) -> None:
    """Which GPU each configuration run on both should use (``decisions.gpu_decisions``)."""
    from calibration.decisions import gpu_decisions
    from calibration.fidelity import find_cases

    keys = [f"{p.parent.name}/{p.name}" for p in find_cases(where)]
    gd = gpu_decisions(keys, lambda k: run(k)[0].requests, lambda k: run(k)[1])
    if gd.empty:
        return
    _ratio_table("the GPU decision: mean over each configuration's runs, h200 / h100",
                 ("configuration", "stat", "runs"),
                 [((r.config, r.stat, f"{r.runs_a}+{r.runs_b}"), r)
                  for r in gd.itertuples(index=False)])
    scored = gd[gd["scored"]]
    console.print(f"the GPU decision, {gd['config'].nunique()} configurations run on both: "
                  f"llmsim reproduces {int(gd['reproduced'].sum())} of {len(gd)}; where the "
                  f"real gap exceeds the engine's own spread {int(scored['reproduced'].sum())} "
                  f"of {len(scored)}", highlight=False)
