"""Simulated time that runs the same however steps are grouped.

Fused decode runs and step-by-step execution must reach the same instants, and events at one
instant must resolve the same way, or a routing tie flips on a rounding difference. So:
- every step lasts a whole number of ``TICK_S`` (a power of two: exact in binary), so a step
  priced one at a time or in a vectorised run lands on the same duration;
- a run's step ends are summed one by one from its start, as step-by-step execution sums them,
  and scheduled at exactly those instants;
- inputs from outside an instance (arrivals, handoffs, KV landings) take effect after every step
  that ends at the same instant (``defer``): at an instant, steps end and the next ones are
  planned first, then every input of that instant is delivered, and only then do the instances
  it woke react (``WAKE``), so inputs that coincide are seen together.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import simpy
from simpy.events import Event

TICK_S = 2.0 ** -30  # ~0.93 ns
DEFERRED = 2  # simpy's priorities are 0 (urgent) and 1 (normal): 2 runs after both
WAKE = 3  # an instance reacts to inputs after all of an instant's inputs are in


def quantize(duration_s: float) -> float:
    return round(duration_s / TICK_S) * TICK_S


def quantize_all(durations_s: np.ndarray) -> np.ndarray:
    return np.round(durations_s / TICK_S) * TICK_S


def run_ends(start_s: float, durations_s: np.ndarray) -> np.ndarray:
    """Absolute end instants of successive steps, summed one at a time from ``start_s``."""
    return np.cumsum(np.concatenate(([start_s], durations_s)))[1:]


def at(env: simpy.Environment, instant_s: float) -> simpy.Timeout:
    """A timeout that fires at exactly ``instant_s`` (``now + (t - now)`` can miss t by one
    rounding)."""
    now = env.now
    delay = max(0.0, instant_s - now)
    for _ in range(8):
        landed = now + delay
        if landed == instant_s or delay == 0.0:
            break
        delay = math.nextafter(delay, math.inf if landed < instant_s else -math.inf)
    return env.timeout(delay)


class _Deferred(Event):
    def __init__(self, env: simpy.Environment, fn: Callable[..., Any], args: tuple,
                 priority: int) -> None:
        super().__init__(env)
        self._ok, self._value = True, None
        self.callbacks.append(lambda _event: fn(*args))
        env.schedule(self, priority=priority)  # type: ignore[arg-type]  # any int orders the heap


def defer(env: simpy.Environment, fn: Callable[..., Any], *args: Any,
          priority: int = DEFERRED) -> None:
    """Call ``fn(*args)`` at this instant, after every step that ends at it."""
    _Deferred(env, fn, args, priority)
