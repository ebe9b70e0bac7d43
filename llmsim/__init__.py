"""llmsim: a discrete-event simulator of LLM inference serving clusters.

Public API: ``load_scenario``, ``simulate``, ``Scenario``, ``Results``. They load on first use,
so ``import llmsim`` (and ``llmsim --help``) stays light.
"""
from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmsim.scenario import Scenario, load_scenario
    from llmsim.simulation import Results, simulate

__all__ = ["Results", "Scenario", "load_scenario", "simulate"]
__version__ = "0.1.0"

_HOME = {"Scenario": "llmsim.scenario", "load_scenario": "llmsim.scenario",
         "Results": "llmsim.simulation", "simulate": "llmsim.simulation"}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(import_module(_HOME[name]), name)
    raise AttributeError(f"module 'llmsim' has no attribute {name!r}")
