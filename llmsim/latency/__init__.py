"""Latency models: the cost of one engine step (iteration) from its shape."""
from llmsim.latency.base import LatencyModel, StepShape

__all__ = ["LatencyModel", "StepShape"]
