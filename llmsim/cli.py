"""The ``llmsim`` command line: a thin layer over the library, no logic of its own."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import typer
from rich.table import Table

from llmsim import __version__
from llmsim.cli_analysis import register
from llmsim.cli_io import SCENARIO_ARG, SET_OPT, console, err, run_app
from llmsim.cli_io import Progress as _Progress
from llmsim.cli_io import fail as _fail
from llmsim.cli_io import interrupted as _interrupted
from llmsim.errors import InputError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Discrete-event simulator of LLM inference serving clusters.")
workload_app = typer.Typer(no_args_is_help=True, help="Workload utilities.")
app.add_typer(workload_app, name="workload")

DEFAULT_OUT = Path("runs/latest")


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
        progress: bool = typer.Option(True, help="progress bar on long runs"),
        max_outside_domain: float | None = typer.Option(
            None, min=0.0, max=1.0, help="exit 3 when more than this share of busy time was "
            "priced outside the cost model's measured range")) -> None:
    """Simulate a scenario and write requests.csv, steps.csv, summary.json, plots."""
    from llmsim.latency.domain import domain_warning
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
    if "energy" in res.summary:
        console.print(f"power model: {res.summary['energy']['power_model']}", highlight=False)
    outside = domain_warning(res.summary["cost_model_domain"])
    if outside:
        err.print(f"[bold yellow]warning:[/] {outside}", highlight=False, soft_wrap=True)
    console.print(f"simulated {res.summary['makespan_s']:.1f} s in {wall_s:.2f} s wall; "
                  f"wrote {len(paths)} files to {out}/", highlight=False)
    if replaced:
        err.print(f"note: {out}/ held an earlier run, now replaced; --out DIR keeps a run",
                  highlight=False)
    share = res.summary["cost_model_domain"].get("outside_share") or 0.0
    if max_outside_domain is not None and share > max_outside_domain:
        err.print(f"error: {share:.1%} of busy time was priced outside the cost model's measured "
                  f"range, over --max-outside-domain {max_outside_domain:g} (results written "
                  f"to {out}/)", highlight=False, soft_wrap=True)
        raise typer.Exit(3)


@app.command()
def check(scenario: Path | None = SCENARIO_ARG, set_: list[str] | None = SET_OPT) -> None:
    """Validate a scenario (config, hardware fit, workload) without running it."""
    from llmsim.scenario import load_scenario
    from llmsim.simulation import load_requests, make_latency, never_served, resolve_hardware

    try:
        sc = load_scenario(scenario, set_ or [])
        hw = resolve_hardware(sc)
        latency = {role: make_latency(sc, hw, tp, hw.pp[role], role)  # every side's cost model
                   for role, (tp, _) in hw.sides.items()}
        reqs = load_requests(sc)
    except InputError as e:
        _fail(str(e))
    never = never_served(sc, hw, reqs)
    if never and len(never) == len(reqs):
        _fail(f"every one of the {len(reqs)} requests would be rejected: {never[0]}")
    if never:
        err.print(f"[bold yellow]warning:[/] {len(never)} of {len(reqs)} requests would be "
                  f"rejected (the first: {never[0]})", highlight=False, soft_wrap=True)
    for line in _domain_warnings(sc, hw, reqs, latency):
        err.print(f"[bold yellow]warning:[/] {line}", highlight=False, soft_wrap=True)
    kv = ", ".join(f"{role} {mem.kv_capacity_tokens}" if role != "colocated" else
                   str(mem.kv_capacity_tokens) for role, (_, mem) in hw.sides.items())
    console.print(f"ok: {sc.name}: {len(reqs)} requests, {hw.model.name} on {hw.describe_gpus()}: "
                  f"{_layout(sc)}; KV capacity {kv} tokens per instance", highlight=False)


def _domain_warnings(sc, hw, reqs, latency: dict) -> list[str]:
    """Where the scenario's limits let a side's steps leave its cost model's measured range
    (``latency``: each side's cost model)."""
    from llmsim.latency.domain import reach_warning
    from llmsim.simulation import step_token_cap

    longest = max((r.prompt_tokens + r.output_tokens for r in reqs), default=0)
    lines = []
    for role, (_, mem) in hw.sides.items():
        domain = latency[role].domain()
        if domain is None:
            continue
        cfg = sc.policies[role]
        reach = {"query_tokens": (step_token_cap(cfg, hw.max_model_len), "the policy's step "
                                  "token budget"),
                 "kv_tokens": (mem.kv_capacity_tokens, "the instance's KV capacity"),
                 "context_per_row": (min(longest, hw.max_model_len), "the longest request")}
        if cfg.row_cap is not None:
            reach["rows"] = (cfg.row_cap, "max_num_seqs")
        line = reach_warning(role, domain, reach)
        if line:
            lines.append(line)
    return lines


def _layout(sc) -> str:
    """``2 x TP1 vllm``, ``P 1 x TP2 bucketserve + D 2 x TP1 distserve_decode``, or per
    colocated group ``4 x TP1 h100 vllm + 2 x TP1 h200 vllm``."""
    parts = []
    for group, side in sc.sides.items():
        pp = f" PP{side.pp}" if side.pp > 1 else ""
        tag = {"prefill": "P ", "decode": "D "}.get(group, "")
        gpu = "" if side.gpu is None else \
            f" {side.gpu if isinstance(side.gpu, str) else side.gpu.name}"
        parts.append(f"{tag}{side.num_instances} x TP{side.tp}{pp}{gpu} {sc.policies[group].kind}")
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
    if "session" in df.columns:  # chat sessions: their prompts' block ids at the scenario's block
        from llmsim.workload.conversation import prompt_block_ids

        df = prompt_block_ids(df, sc.kv_cache.block_size)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_llmsim(df, out)
    console.print(f"wrote {len(df)} requests to {out}")


register(app)  # the analysis commands: goodput, placement, sweep, regress


def main() -> None:
    run_app(app, err)


if __name__ == "__main__":
    main()
