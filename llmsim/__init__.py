"""llmsim: a discrete-event simulator of LLM inference serving clusters.

Public API: ``load_scenario``, ``simulate``, ``Scenario``, ``Results``.
"""
from llmsim.scenario import Scenario, load_scenario
from llmsim.simulation import Results, simulate

__all__ = ["Scenario", "load_scenario", "simulate", "Results"]
__version__ = "0.1.0"
