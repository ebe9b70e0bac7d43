"""Where a cost model was measured or fitted, and how much of a run it priced outside that.

A measured or fitted cost model states its ``Domain``: the range of each step axis it saw
(query tokens, KV tokens read, rows, context of the longest row), with the GPU, model and TP it
is for and any stand-ins it uses. Each instance keeps a ``DomainTally`` of the busy time its
steps spent outside that range and how far past it they went; ``domain_report`` sums the tallies
for the summary. Past the measured range a model extrapolates (linearly, or by its fitted form),
which is where the independent checks found its errors largest.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from llmsim.latency.base import StepShape

# the step axes, and how the report names them
AXES = ("query_tokens", "kv_tokens", "rows", "context_per_row")
LABELS = {"query_tokens": "query tokens per step", "kv_tokens": "KV tokens per step",
          "rows": "rows per step", "context_per_row": "context per row"}


@dataclass(frozen=True)
class Domain:
    """The largest value of each step axis a cost model was measured or fitted on (an axis
    missing from ``max_by_axis`` is not bounded), what it is for, and its stand-ins."""

    max_by_axis: dict[str, float]
    about: str  # e.g. "operator grids of h100/llama-3.1-8b, TP 1"
    notes: tuple[str, ...] = ()  # parts not measured for this setting (stand-ins, extrapolations)

    def __post_init__(self) -> None:
        unknown = set(self.max_by_axis) - set(AXES)
        if unknown:
            raise ValueError(f"unknown domain axes: {sorted(unknown)}")


def step_axes(shape: StepShape) -> tuple[float, float, float, float]:
    """(query tokens, KV tokens read, rows, context of the longest row) of one step."""
    q = shape.num_decode_seqs + shape.dense_only_tokens
    kv = (shape.num_decode_seqs * shape.decode_context_max if shape.padded
          else shape.decode_context_sum)
    rows, ctx = shape.num_decode_seqs, shape.decode_context_max
    for n, c in shape.prefill_chunks:
        q += n
        kv += n + c
        rows += 1
        ctx = max(ctx, n + c)
    return q, kv, rows, ctx


@dataclass
class DomainTally:
    """One instance's steps against its cost model's domain."""

    domain: Domain
    busy_s: float = 0.0
    outside_s: float = 0.0
    worst: dict[str, float] = field(default_factory=dict)  # largest value seen past the range

    def __post_init__(self) -> None:
        inf = math.inf
        self._hi = tuple(self.domain.max_by_axis.get(a, inf) for a in AXES)

    def add(self, shape: StepShape, num_steps: int, duration_s: float) -> None:
        """A step, or a decode run of ``num_steps`` steps (each row's context one longer each
        step): its time outside the range, in proportion to its steps outside."""
        self.busy_s += duration_s
        q, kv, rows, ctx = step_axes(shape)
        hq, hkv, hrows, hctx = self._hi
        last = num_steps - 1
        growth = shape.num_decode_seqs  # KV read grows by a token per row per step
        kv_end, ctx_end = kv + last * growth, ctx + last
        if q <= hq and rows <= hrows and kv_end <= hkv and ctx_end <= hctx:
            return  # the common case: inside
        for axis, value, hi in (("query_tokens", q, hq), ("rows", rows, hrows),
                                ("kv_tokens", kv_end, hkv), ("context_per_row", ctx_end, hctx)):
            if value > hi and value > self.worst.get(axis, 0.0):
                self.worst[axis] = value
        if q > hq or rows > hrows or num_steps == 1:
            self.outside_s += duration_s
            return
        # a run that grows out of the range: steps k with kv + k*growth > hkv or ctx + k > hctx
        inside = num_steps
        if kv_end > hkv and growth:
            inside = min(inside, max(0, math.floor((hkv - kv) / growth) + 1))
        if ctx_end > hctx:
            inside = min(inside, max(0, math.floor(hctx - ctx) + 1))
        self.outside_s += duration_s * (num_steps - inside) / num_steps


def domain_report(tallies: list[tuple[str, DomainTally | None]]) -> dict:
    """The summary's ``cost_model_domain``: each role's measured range, and over all instances
    the share of busy time priced outside it and the largest value past it per axis (with that
    axis' measured maximum and the factor). ``tallies``: (role, tally or None: no domain)."""
    measured: dict[str, dict] = {}
    busy = outside = 0.0
    past: dict[str, dict] = {}
    analytic = False
    for role, t in tallies:
        if t is None:
            analytic = True
            continue
        d = t.domain
        measured.setdefault(role, {"about": d.about, "max": dict(d.max_by_axis),
                                   "notes": list(d.notes)})
        busy += t.busy_s
        outside += t.outside_s
        for axis, value in t.worst.items():
            hi = d.max_by_axis[axis]
            if value / hi > past.get(axis, {}).get("factor", 0.0):
                past[axis] = {"max_seen": value, "max_measured": hi, "factor": value / hi}
    if not measured:
        return {"measured": None, "note": "analytic cost model: no measured range to check"}
    out: dict = {"measured": measured, "busy_s": busy,
                 "outside_busy_s": outside, "outside_share": outside / busy if busy else 0.0,
                 "past_range": past}
    if analytic:
        out["note"] = "some instances run an analytic cost model (not checked)"
    return out


def domain_warning(report: dict) -> str:
    """One line for a run that priced time outside the measured range ('' if none)."""
    share = report.get("outside_share") or 0.0
    if not share and not report.get("past_range"):
        return ""
    parts = [f"{LABELS[a]} up to {p['max_seen']:,.0f} ({p['factor']:.1f}x the measured "
             f"{p['max_measured']:,.0f})" for a, p in
             sorted(report["past_range"].items(), key=lambda kv: -kv[1]["factor"])]
    return (f"{share:.1%} of simulated busy time was priced outside the cost model's measured "
            f"range: {'; '.join(parts)}; those step costs are extrapolated")


def reach_warning(role: str, domain: Domain, reach: dict[str, tuple[float, str]]) -> str:
    """One line if a scenario's limits let steps leave the measured range ('' if not):
    ``reach`` maps an axis to the most the scenario allows and what allows it."""
    over = [f"{LABELS[a]} up to {v:,.0f} ({why}; measured up to {domain.max_by_axis[a]:,.0f})"
            for a, (v, why) in reach.items()
            if a in domain.max_by_axis and v > domain.max_by_axis[a]]
    notes = list(domain.notes)
    if not over and not notes:
        return ""
    where = "" if role == "colocated" else f"{role} instances: "
    parts = ([f"steps may be priced outside the cost model's measured range ({domain.about}): "
              + "; ".join(over)] if over else [])
    parts += [f"the cost model ({domain.about}) uses a part not measured for this setting: "
              f"{n}" for n in notes]
    return where + "; ".join(parts)
