"""The lab CLI's shared pieces: the Typer app every ``llmsim-lab`` command registers on, its
consoles, and the one-line refusal."""
from __future__ import annotations

import typer

from llmsim.cli_io import make_console

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="llmsim's calibration and validation lab: measured GPU profiles, fitted "
                       "engine models, and llmsim against real engine runs.")
console = make_console()
err = make_console(stderr=True)


def _fail(msg: str) -> None:
    err.print(f"[bold red]error:[/] {msg}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)
