"""The command line's plumbing: a progress bar for long runs, and running a typer app so that
usage errors are one line like every other input error."""
from __future__ import annotations

import os
import sys
import time
from typing import Any, NoReturn

import typer
from rich.console import Console


def make_console(stderr: bool = False) -> Console:
    """A console that never cuts a table short: piped or redirected output (no terminal, no
    $COLUMNS) is laid out up to 200 columns wide instead of rich's 80, so cells do not fold."""
    stream = sys.stderr if stderr else sys.stdout
    piped = not stream.isatty() and not os.environ.get("COLUMNS")
    return Console(stderr=stderr, width=200 if piped else None)


err = make_console(stderr=True)
console = make_console()
SCENARIO_ARG = typer.Argument(None, help="scenario YAML (default: the embedded quickstart)")
SET_OPT = typer.Option(None, "--set", help="override a field: key.path=value (repeatable)")


def fail(msg: str) -> NoReturn:
    """An input error: one line on stderr, exit 2."""
    err.print(f"[bold red]error:[/] {msg}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def interrupted(msg: str) -> NoReturn:
    err.print(f"[bold yellow]interrupted:[/] {msg}", highlight=False, soft_wrap=True)
    raise typer.Exit(130)


class Progress:
    """A rich progress bar over finished requests, shown only when the run takes a while."""

    def __init__(self, enabled: bool, unit: str = "requests") -> None:
        self.enabled, self.unit = enabled, unit
        self._bar: Any = None  # a rich Progress once shown
        self._task: Any = None
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




class Status:
    """A one-line live status on stderr for searches whose length is not known up front
    (goodput bisection, placement): shown only on a terminal; ``probe`` fits ``on_probe``."""

    def __init__(self, what: str, enabled: bool | None = None) -> None:
        self.what, self.count = what, 0
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._status: Any = None

    def __enter__(self) -> Status:
        if self.enabled:
            self._status = err.status(self.what)
            self._status.start()
        return self

    def probe(self, rate_per_s: float, attainment: float) -> None:
        self.count += 1
        if self._status is not None:
            self._status.update(f"{self.what}: probe {self.count}, {rate_per_s:.3g} req/s -> "
                                f"{attainment:.1%} attainment")

    def __exit__(self, *exc: Any) -> None:
        if self._status is not None:
            self._status.stop()


def run_app(typer_app: typer.Typer, console_err: Console) -> NoReturn:
    """Run a typer app so that usage errors (an unknown option, a missing argument) are one
    line and exit 2, like every other input error; no arguments show the help."""
    try:
        rc = typer_app(standalone_mode=False)
    except typer.Abort:
        console_err.print("[bold yellow]interrupted:[/] by the user", highlight=False)
        sys.exit(130)
    except typer.TyperException as e:  # typer's click exceptions (usage errors and the like)
        if type(e).__name__ == "NoArgsIsHelpError":
            e.show()  # type: ignore[attr-defined]
            sys.exit(0)
        msg = e.format_message() if hasattr(e, "format_message") else str(e)
        console_err.print(f"[bold red]error:[/] {msg}", highlight=False, soft_wrap=True)
        sys.exit(getattr(e, "exit_code", 2))
    sys.exit(rc if isinstance(rc, int) else 0)
