"""``llmsim fleet``: the cheapest fleet over GPU types that carries a rate within the SLO."""
from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.table import Table

from llmsim.cli_io import SET_OPT, Status, console
from llmsim.cli_io import fail as _fail
from llmsim.errors import InputError


def _prices(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        gpu, _, value = item.partition("=")
        try:
            out[gpu.strip()] = float(value)
        except ValueError:
            _fail(f"--usd-per-hour {item!r}: expected GPU=price, e.g. h100=2.5")
        if out[gpu.strip()] < 0:
            _fail(f"--usd-per-hour {item!r}: a price cannot be negative")
    return out


def fleet_cmd(scenario: Path = typer.Argument(..., help="the scenario (colocated or "
                                                        "disaggregated) whose workload and SLO to carry"),
              rate: float = typer.Option(..., help="the rate to carry, req/s"),
              gpu: list[str] = typer.Option(..., "--gpu", help="a GPU type to consider "
                                            "(repeat: --gpu h100 --gpu h200)"),
              tp: list[int] = typer.Option([1], help="TP degrees to consider"),
              pp: list[int] = typer.Option([1], help="pipeline degrees to consider"),
              usd_per_hour: list[str] = typer.Option([], "--usd-per-hour", help="a GPU-hour "
                                                     "price, GPU=price (default: the catalog's)"),
              target: float = typer.Option(0.9, help="SLO attainment to hold"),
              seeds: int = typer.Option(1, help="seeds per probe"),
              window_s: float = typer.Option(60.0, help="arrival window of each probe, s"),
              workers: int | None = typer.Option(None, help="processes measuring the options "
                                                 "(default: cores)"),
              write: Path | None = typer.Option(None, "--write", help="write the cheapest "
                                                "fleet's scenario here (YAML; relative paths in "
                                                "it resolve from the input scenario's folder)"),
              set_: list[str] | None = SET_OPT) -> None:
    """The cheapest fleet over GPU types (and TP/PP) that holds the SLO target at --rate:
    one instance of each option measured, fleets (mixed ones too, colocated) ranked by $/h,
    the cheapest simulated whole until one holds. Exit 1 if none does."""
    from llmsim.analysis.fleet import cheapest_fleet, fleet_scenario
    from llmsim.analysis.goodput import at_rate
    from llmsim.metrics.publish import write_atomic
    from llmsim.scenario import dump_scenario, load_scenario

    try:
        sc = load_scenario(scenario, set_ or [])
        with Status("fleet search") as status:
            best, tried, options = cheapest_fleet(
                sc, rate, gpu, tp, pp, _prices(usd_per_hour), target, tuple(range(seeds)),
                window_s=window_s, on_probe=status.probe,
                workers=workers if workers is not None else (os.cpu_count() or 1))
    except InputError as e:
        _fail(str(e))
    opts = Table(title="options: one instance each")
    for col in ("side", "option", "$/h", "goodput req/s", "req/s per $/h"):
        opts.add_column(col)
    for role, options_of in options.items():
        for o in options_of:
            opts.add_row(role, o.label(), f"{o.usd_per_hour:.2f}", f"{o.goodput_per_s:.3g}",
                         f"{o.goodput_per_s / o.usd_per_hour:.3g}" if o.usd_per_hour else "-")
    console.print(opts)
    fleets = Table(title=f"fleets for {rate:g} req/s, cheapest first (simulated whole)")
    for col in ("fleet", "GPUs", "$/h", "attainment"):
        fleets.add_column(col)
    for f in tried:
        fleets.add_row(f.describe(), str(f.num_gpus), f"{f.usd_per_hour:.2f}",
                       f"{f.attainment:.1%}" if f.attainment is not None else "-")
    console.print(fleets)
    if best is None:
        console.print(f"no fleet among the {len(tried)} cheapest holds {target:.0%}; offer more "
                      "GPU types, or lower the rate", highlight=False)
        raise typer.Exit(1)
    console.print(f"cheapest: {best.describe()}: {best.num_gpus} GPUs, ${best.usd_per_hour:.2f}/h,"
                  f" {best.attainment:.1%} attainment at {rate:g} req/s", highlight=False)
    if write is not None:
        found = at_rate(fleet_scenario(sc, best), rate, window_s)  # as it was verified
        try:
            write_atomic(write, f"# llmsim fleet: {best.describe()}, ${best.usd_per_hour:.2f}/h "
                         f"at {rate:g} req/s\n" + dump_scenario(found))
        except OSError as e:
            _fail(f"--write {write}: {e.strerror or e}")
        console.print(f"wrote {write}", highlight=False)
